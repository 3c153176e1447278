//! TLS server blocks beyond [`Bed::enable_tls`]'s single catch-all one: a default server with a
//! certificate of no lineage (what a node serves for a name no vhost answers), and name-based
//! vhosts that use a lineage (`server_name *.wild.test wild.test`). Both write the node's
//! `tls.conf`; the caller reloads (or lets certherd's deploy do it).

use super::node::write;
use super::proc::run_ok;
use super::Bed;
use crate::BedError;

impl Bed {
    /// Replaces node `n`'s TLS config with a `default_server` that uses a self-signed
    /// certificate for `default.invalid` (made once per node), plus `extra` server blocks.
    /// With `reject`, the default server refuses unknown names with the TLS alert
    /// `unrecognized_name` (`ssl_reject_handshake on`) instead.
    pub fn default_tls_server(&self, n: usize, reject: bool) -> Result<(), BedError> {
        let dir = self.node_dir(n);
        let (cert, key) = (dir.join("default-cert.pem"), dir.join("default-key.pem"));
        if !cert.exists() {
            run_ok(
                std::process::Command::new("openssl")
                    .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                    .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
                    .args(["-subj", "/CN=default.invalid", "-keyout"])
                    .arg(&key)
                    .arg("-out")
                    .arg(&cert),
                std::time::Duration::from_secs(20),
            )?;
        }
        let body = if reject {
            "  ssl_reject_handshake on;\n".to_owned()
        } else {
            format!(
                "  ssl_certificate {};\n  ssl_certificate_key {};\n  location / {{ return 200 \"default node{n}\\n\"; }}\n",
                cert.display(),
                key.display()
            )
        };
        write(
            &self.nginx_tls_conf(n),
            &format!(
                "server {{\n  listen {ip}:443 ssl default_server;\n  server_name _;\n{body}}}\n",
                ip = self.ip(n)
            ),
        )
    }

    /// Appends to node `n`'s TLS config a vhost for `server_names` (nginx syntax, e.g.
    /// `*.wild.test wild.test`) that uses `live/<lineage>/`.
    pub fn add_tls_vhost(
        &self,
        n: usize,
        server_names: &str,
        lineage: &str,
    ) -> Result<(), BedError> {
        let path = self.nginx_tls_conf(n);
        let mut conf = std::fs::read_to_string(&path).map_err(BedError::io("read", &path))?;
        let live = self.letsencrypt_dir(n).join("live").join(lineage);
        conf.push_str(&format!(
            "server {{\n  listen {ip}:443 ssl;\n  server_name {server_names};\n  ssl_certificate {l}/fullchain.pem;\n  ssl_certificate_key {l}/privkey.pem;\n  location / {{ return 200 \"{lineage} node{n}\\n\"; }}\n}}\n",
            ip = self.ip(n),
            l = live.display()
        ));
        write(&path, &conf)
    }
}
