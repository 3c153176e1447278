//! The size-limited line framing both ends read with: a line is refused once it passes its
//! limit, before it is parsed or even buffered whole, so a hostile peer cannot make the other end
//! hold more than the limit.

use std::io::BufRead;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest request line the agent reads (a certificate chain and key fit many times over).
pub const MAX_REQUEST_LINE: usize = 1 << 20;
/// Longest response line the primary reads.
pub const MAX_RESPONSE_LINE: usize = 1 << 20;

/// A line that could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line is longer than the limit; the rest of the stream is not trusted.
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Moves the bytes of `buf` up to the first newline into `line`, enforcing `limit`. Returns how
/// many bytes of `buf` were used and whether the line is complete. Shared by both readers.
fn take_line_part(
    buf: &[u8],
    line: &mut Vec<u8>,
    limit: usize,
) -> Result<(usize, bool), LineError> {
    let (chunk, used, done) = match buf.iter().position(|&b| b == b'\n') {
        Some(i) => (&buf[..i], i + 1, true),
        None => (buf, buf.len(), false),
    };
    if line.len() + chunk.len() > limit {
        return Err(LineError::TooLong(limit));
    }
    line.extend_from_slice(chunk);
    Ok((used, done))
}

/// Reads one `\n`-terminated line of at most `limit` bytes, without ever buffering more than
/// that. `Ok(None)` at a clean end of stream.
pub fn read_line_limited(
    reader: &mut impl BufRead,
    limit: usize,
) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (used, done) = take_line_part(buf, &mut line, limit)?;
        reader.consume(used);
        if done {
            return Ok(Some(line));
        }
    }
}

/// Async twin of [`read_line_limited`] for the primary side.
pub async fn read_line_limited_async<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let (used, done) = take_line_part(buf, &mut line, limit)?;
        reader.consume(used);
        if done {
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_limited() {
        let mut r = std::io::Cursor::new(b"short\nxxxxxxxxxxxxxxxx\n".to_vec());
        assert_eq!(read_line_limited(&mut r, 8).unwrap().unwrap(), b"short");
        assert!(matches!(
            read_line_limited(&mut r, 8),
            Err(LineError::TooLong(8))
        ));
        let mut r = std::io::Cursor::new(b"".to_vec());
        assert!(read_line_limited(&mut r, 8).unwrap().is_none());
    }
}
