//! `certherd-bench fdpass HOST PORT`: an ssh `ProxyCommand` helper for `ProxyUseFdpass=yes` that
//! connects with `TCP_NODELAY` set from the first byte and hands the socket to ssh. The anatomy
//! scenario measures what that saves (Nagle + delayed ACK before ssh sets `TCP_NODELAY` itself).
use std::net::TcpStream;

/// `ProxyCommand` helper for `ProxyUseFdpass=yes`: connect with TCP_NODELAY, pass the socket to
/// ssh over stdout, exit.
pub(crate) fn fdpass(args: &[String]) -> i32 {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let [host, port] = args else {
        eprintln!("usage: certherd-bench fdpass HOST PORT");
        return 2;
    };
    let stream = match TcpStream::connect(format!("{host}:{port}")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fdpass: connect {host}:{port}: {e}");
            return 1;
        }
    };
    let _ = stream.set_nodelay(true);
    let fd: libc::c_int = stream.as_raw_fd();
    let mut byte = [0u8; 1];
    // SAFETY: a standard SCM_RIGHTS sendmsg: every pointer refers to a live local buffer and
    // the control buffer is CMSG_SPACE(sizeof(int)) bytes, aligned for cmsghdr.
    let r = unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let mut control = vec![0u64; space.div_ceil(8)];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::copy_nonoverlapping(
            (&fd as *const libc::c_int).cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            std::mem::size_of::<libc::c_int>(),
        );
        libc::sendmsg(1, &msg, 0)
    };
    if r < 0 {
        eprintln!("fdpass: sendmsg: {}", std::io::Error::last_os_error());
        return 1;
    }
    0
}
