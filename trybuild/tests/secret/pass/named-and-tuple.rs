use ligand::{ExposeSecret, Secret, SecretString};

#[ligand::secret(path = "secret/data/accounts/db")]
struct DbCreds {
    username: String,
    #[secret(key = "db-password")]
    password: SecretString,
    port: u16,
}

#[ligand::secret(path = "secret/data/partner/api")]
struct ApiKey(#[secret(key = "api-key")] SecretString);

fn main() {
    assert_eq!(<DbCreds as Secret>::PATH, "secret/data/accounts/db");
    let creds = DbCreds::__from_secret(br#"{"username":"app","db-password":"pw","port":5432}"#).unwrap();
    assert_eq!(creds.password.expose_secret(), "pw");
    assert_eq!(creds.port, 5432);
    assert_eq!(format!("{creds:?}"), "DbCreds { username: <redacted>, password: <redacted>, port: <redacted> }");
    let key = ApiKey::__from_secret(br#"{"api-key":"k"}"#).unwrap();
    assert_eq!(key.0.expose_secret(), "k");
    assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
}
