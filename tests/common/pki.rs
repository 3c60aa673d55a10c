//! A throw-away certificate authority for the tests: the hub's server certificate and member
//! systems' client certificates, made once per test process in its own folder, with the
//! quarantine's sealing key beside them.

use std::path::PathBuf;
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};

pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate and its key, PEM.
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

static PKI: OnceLock<Pki> = OnceLock::new();

impl Pki {
    pub fn get() -> &'static Pki {
        PKI.get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("pki-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("pki folder");
            let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(DnType::CommonName, "lienthong test CA");
            let issuer =
                CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
            let server_key = KeyPair::generate().expect("key");
            let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("server params")
                .signed_by(&server_key, &issuer)
                .expect("server certificate");
            std::fs::write(dir.join("ca.pem"), issuer.pem()).expect("written");
            std::fs::write(dir.join("server.pem"), server.pem()).expect("written");
            std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("written");
            // The quarantine's sealing key: 32 random bytes, hex.
            let key: [u8; 32] = rand::random();
            std::fs::write(dir.join("quarantine.key"), hex::encode(key)).expect("written");
            // The audit log's signing key and the subject references' key, likewise.
            for name in ["audit-signing.key", "audit-subject.key"] {
                let key: [u8; 32] = rand::random();
                std::fs::write(dir.join(name), hex::encode(key)).expect("written");
            }
            Pki {
                dir,
                ca_pem: issuer.pem(),
                issuer,
            }
        })
    }

    /// A client certificate for `name`, signed by the test CA; `expired` ones ended in 2020.
    pub fn client(&self, name: &str, expired: bool) -> ClientCert {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = date_time_ymd(2019, 1, 1);
            params.not_after = date_time_ymd(2020, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("client certificate");
        ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
