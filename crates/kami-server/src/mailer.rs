//! The SMTP transport of buyer mail (lettre over rustls): built from the SMTP settings in
//! effect (`[smtp]` at start-up, so a bad `[smtp]` is seen at once; again whenever the console
//! saves new SMTP settings), and shared by the mail worker. What is mailed,
//! and when, is the mail service's business (`services/mail.rs`).

use std::time::Duration;

use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpTls};

/// Connections kept open to the SMTP server (and messages sent at once).
pub const POOL_SIZE: u32 = 8;

/// Why the mailer could not be set up (at start-up, so a bad `[smtp]` is seen at once).
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("cannot read `smtp.ca_file` `{}`: {source}", .path.display())]
    ReadCaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("`smtp.ca_file` `{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .path.display())]
    NoCertificate { path: std::path::PathBuf },
    #[error("`smtp.ca_file` `{}`: {message}", .path.display())]
    BadCaFile {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("smtp: TLS setup for `{host}`: {message}")]
    Tls { host: String, message: String },
}

/// The SMTP side of buyer mail: one per process, shared by the worker.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    retry_base_ms: i64,
    /// Bound on one whole SMTP transaction (connect … QUIT).
    send_timeout: Duration,
    /// How long a claimed row belongs to this worker: longer than any send.
    lease_ms: i64,
}

impl Mailer {
    /// Build the transport from `[smtp]` (reading `ca_file`). Needs a Tokio runtime: the
    /// connection pool starts its housekeeping task.
    pub fn new(cfg: &SmtpConfig) -> Result<Mailer, MailSetupError> {
        let timeout = Duration::from_secs(u64::from(cfg.timeout_seconds));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(POOL_SIZE));
        if cfg.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(cfg.host.clone());
            if let Some(path) = &cfg.ca_file {
                params = params.add_root_certificate(read_ca_file(path)?);
            }
            let params = params.build().map_err(|e| MailSetupError::Tls {
                host: cfg.host.clone(),
                message: e.to_string(),
            })?;
            builder = builder.tls(match cfg.tls {
                SmtpTls::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let send_timeout = timeout * 4;
        Ok(Mailer {
            transport: builder.build(),
            from: cfg.from.clone(),
            retry_base_ms: i64::from(cfg.retry_base_seconds) * 1000,
            send_timeout,
            lease_ms: send_timeout.as_millis() as i64 + 60_000,
        })
    }
}

impl Mailer {
    /// Hand one message to the SMTP server; `Ok` only once the server accepted it.
    pub async fn send(&self, message: Message) -> Result<(), String> {
        match tokio::time::timeout(self.send_timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err(format!(
                "no answer from the mail server within {} s",
                self.send_timeout.as_secs()
            )),
        }
    }

    /// The sender mailbox (`smtp.from`).
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// The first retry's wait (`smtp.retry_base_seconds`).
    pub fn retry_base_ms(&self) -> i64 {
        self.retry_base_ms
    }

    /// How long a claimed row belongs to this process: longer than any send.
    pub fn lease_ms(&self) -> i64 {
        self.lease_ms
    }
}

fn read_ca_file(path: &std::path::Path) -> Result<Certificate, MailSetupError> {
    let pem = std::fs::read(path).map_err(|source| MailSetupError::ReadCaFile {
        path: path.to_path_buf(),
        source,
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(MailSetupError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Certificate::from_pem(&pem).map_err(|e| MailSetupError::BadCaFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// An error with its causes, on one line ("Connection error: Connection refused (os error 111)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn error_chains_are_one_line_without_repeats() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "tls error: bad\ncert",
            Some(Box::new(E("bad\ncert", Some(Box::new(E("root", None)))))),
        );
        assert_eq!(error_chain(&e), "tls error: bad cert: root");
    }

    #[tokio::test]
    async fn setup_errors_name_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |ca: &str| {
            let toml = format!(
                "[smtp]\nhost = \"127.0.0.1\"\nfrom = \"a@example.com\"\nca_file = \"{}\"\n",
                dir.path().join(ca).display()
            );
            crate::Config::from_toml_str(&toml)
                .unwrap()
                .config
                .smtp
                .unwrap()
        };
        let err = |ca: &str| match Mailer::new(&cfg(ca)) {
            Ok(_) => panic!("accepted {ca}"),
            Err(e) => e.to_string(),
        };
        let msg = err("missing.pem");
        assert!(msg.starts_with("cannot read `smtp.ca_file`"), "{msg}");
        assert!(msg.contains("missing.pem"), "{msg}");
        std::fs::write(dir.path().join("empty.pem"), "hello").unwrap();
        assert!(err("empty.pem").contains("holds no PEM certificate"));
        std::fs::write(
            dir.path().join("bad.pem"),
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(err("bad.pem").starts_with("`smtp.ca_file`"));
        // Without a CA file (public roots) the mailer builds; nothing is connected yet.
        let ok = crate::Config::from_toml_str(
            "[smtp]\nhost = \"smtp.example.com\"\nfrom = \"a@example.com\"\n",
        )
        .unwrap()
        .config
        .smtp
        .unwrap();
        assert!(Mailer::new(&ok).is_ok());
    }
}
