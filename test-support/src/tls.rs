//! Certificates made for a test with `openssl` (Debian's openssl package):
//! a CA per [`Ca::new`], and certificates it signs for given names, with
//! both server and client use, so one certificate can serve either end.

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority in `dir`: `<name>.pem`, `<name>.key`.
pub struct Ca {
    dir: PathBuf,
    name: String,
}

/// A certificate and its key, PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Ca {
    /// A new self-signed CA named `name` in `dir` (valid one day).
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        Self {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    /// The CA's certificate.
    pub fn pem(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A certificate for `alt_names` (`subjectAltName` entries such as
    /// `IP:127.0.0.1`, `DNS:media-node`), for server and client use, saved
    /// as `<file>.pem` and `<file>.key`.
    pub fn issue(&self, file: &str, alt_names: &[&str]) -> Issued {
        let dir = &self.dir;
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{file}.key"),
                "-out",
                &format!("{file}.csr"),
                "-subj",
                &format!("/CN={file}"),
            ],
        );
        std::fs::write(
            dir.join(format!("{file}.ext")),
            format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
                alt_names.join(",")
            ),
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{file}.csr"),
                "-CA",
                &format!("{}.pem", self.name),
                "-CAkey",
                &format!("{}.key", self.name),
                "-CAcreateserial",
                "-out",
                &format!("{file}.pem"),
                "-days",
                "1",
                "-extfile",
                &format!("{file}.ext"),
            ],
        );
        Issued {
            cert: dir.join(format!("{file}.pem")),
            key: dir.join(format!("{file}.key")),
        }
    }
}
