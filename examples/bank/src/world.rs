//! The bank in one process: the development identity and the four services on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ligand::audit::AuditChain;
use ligand::provider::LimitOverride;
use ligand::testkit::TxnIssuer;
use ligand::{
    BoxError, Config, GatewayConfig, HttpBinding, JsonLinesTelemetry, Server, SpiffeId,
    SubjectTokenConfig, TxnMinter, TxnTokenConfig, WimseConfig,
};
use ligand_identity_agent::{DevDir, EmbeddedIdentity, JwtAuthority, LocalCa};
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
use ligand_ratelimit_governor::{GovernorConfig, GovernorLimiter};
use ligand_registry_static::StaticRegistry;
use ligand_secrets_file::FileSecrets;

use crate::{ACCOUNTS, Accounts, FRAUD, Fraud, GATEWAY, Gateway, TRANSFERS, Transfers};

/// The `iss` of the demo identity provider's access tokens.
pub const IDP_ISSUER: &str = "https://idp.bank.example";
/// The `aud` the gateway requires of access tokens: the bank's public API.
pub const API_AUDIENCE: &str = "https://api.bank.example";
/// The `iss` of the Transaction Tokens the gateway mints.
pub const TXN_ISSUER: &str = "https://gateway.bank.example";

/// The database user the demo starts with.
pub const DB_USER: &str = "ledger-app";

/// Where the bank keeps its state and how its identities behave.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The development folder holding the shared development CA (and the development
    /// caller's credentials with `--serve`).
    pub dev_dir: PathBuf,
    /// The folder of the policies, one subfolder per service.
    pub policy_dir: PathBuf,
    /// A folder for the secrets and the audit logs.
    pub work_dir: PathBuf,
    /// The X.509-SVID lifetime of the services; they rotate at half of it.
    pub x509_ttl: Duration,
    /// The listen address of each service, in the order of [`SERVICES`](crate::SERVICES)
    /// (port 0: any free port).
    pub listen: [String; 4],
}

impl Options {
    /// Options keeping everything under `dir`, with the policies of this package, SVIDs of
    /// `x509_ttl` and free loopback ports.
    pub fn under(dir: &Path, x509_ttl: Duration) -> Self {
        Self {
            dev_dir: dir.join("dev"),
            policy_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/policy")),
            work_dir: dir.to_owned(),
            x509_ttl,
            listen: std::array::from_fn(|_| "127.0.0.1:0".to_owned()),
        }
    }
}

/// One running service.
#[derive(Debug)]
#[non_exhaustive]
pub struct Running {
    /// Its short name.
    pub name: &'static str,
    /// Its SPIFFE ID.
    pub id: &'static str,
    /// The server.
    pub server: Server,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The four services and what the scenario needs to act as the bank's workloads and people.
#[derive(Debug)]
#[non_exhaustive]
pub struct Bank {
    /// fraud, accounts, transfers, gateway.
    pub services: Vec<Running>,
    /// The development folder.
    pub dev: DevDir,
    /// The shared development CA.
    pub ca: Arc<LocalCa>,
    /// The WIT issuer of the transfers service's identity (trusted by accounts' `[wimse]`).
    pub transfers_jwt: Arc<JwtAuthority>,
    /// The demo's identity provider: it signs the access tokens of the bank's customers,
    /// which the gateway validates against its public keys. A real deployment points the
    /// gateway at its OIDC provider's key set instead (`[gateway] jwks`).
    pub idp: Arc<TxnIssuer>,
    /// The secrets folder (`<work dir>/secrets`).
    pub secrets_dir: PathBuf,
    /// The audit logs (`<work dir>/audit/<service>.jsonl`, hash-chained with signed
    /// checkpoints) and the trust bundle that verifies them (`bundle.pem`).
    pub audit_dir: PathBuf,
}

impl Bank {
    /// Starts the development identity and the four services, callees first.
    ///
    /// # Errors
    /// A service that does not start (init is fail-closed: identity, policy, binding).
    pub async fn start(options: &Options) -> Result<Self, BoxError> {
        let dev = DevDir::new(&options.dev_dir);
        let secrets_dir = options.work_dir.join("secrets");
        let audit_dir = options.work_dir.join("audit");
        std::fs::create_dir_all(&audit_dir)?;
        write_db_secret(&secrets_dir, DB_USER, "correct horse battery staple")?;

        let identity = |id: &str| -> Result<EmbeddedIdentity, BoxError> {
            Ok(EmbeddedIdentity::development(SpiffeId::new(id)?, &dev)?
                .with_x509_ttl(options.x509_ttl))
        };
        let fraud_identity = identity(FRAUD)?;
        let accounts_identity = identity(ACCOUNTS)?;
        let transfers_identity = identity(TRANSFERS)?;
        let gateway_identity = identity(GATEWAY)?;
        let ca = gateway_identity.ca().clone();
        // The trust bundle `ligand audit verify --bundle` checks the logs' checkpoints with.
        std::fs::write(audit_dir.join("bundle.pem"), ca.root_pem())?;
        let transfers_jwt = transfers_identity.jwt().clone();
        // accounts verifies WIT/WPT pairs (and refuses requests without them): it trusts the
        // WIT issuers of the workloads that call it.
        let mut wit_keys = transfers_identity.jwt().jwks();
        wit_keys.keys.extend(gateway_identity.jwt().jwks().keys);

        // The gateway validates customers' access tokens and mints a Transaction Token per
        // request with a key of its own; transfers requires one on every call, accounts
        // verifies it when present (and its policy wants one for moving money).
        let idp = Arc::new(TxnIssuer::new("bank-idp-1"));
        let signing = TxnIssuer::new("bank-txn-1");
        let minter = TxnMinter::new(
            SubjectTokenConfig::new(idp.jwks(), [IDP_ISSUER], API_AUDIENCE),
            signing.pem().as_bytes(),
            "ES256",
            "bank-txn-1",
            crate::TRUST_DOMAIN,
            GATEWAY,
        )?
        .issuer(TXN_ISSUER);
        let txn_keys = minter.jwks()?;
        let txn = |require: bool| {
            TxnTokenConfig::new(txn_keys.clone())
                .issuers([TXN_ISSUER])
                .require(require)
        };

        let builder = |name: &str| -> Result<_, BoxError> {
            let policy = RegorusConfig::folder(options.policy_dir.join(name));
            Ok(Config::builder()
                .policy(RegorusPolicy::new(&policy)?)
                // Hash-chained, a signed checkpoint every 50 records and at shutdown.
                .telemetry(JsonLinesTelemetry::chained_file(
                    audit_dir.join(format!("{name}.jsonl")),
                    AuditChain::default().checkpoint_every(50),
                )?))
        };
        let base = |name: &str, listen: &str| -> Result<_, BoxError> {
            Ok(builder(name)?.binding(HttpBinding::new(listen)))
        };
        let limiter = |config: GovernorConfig| GovernorLimiter::new(config);
        let mut services = Vec::with_capacity(4);

        let config = base("fraud", &options.listen[0])?
            .identity(fraud_identity)
            .rate_limiter(limiter(GovernorConfig::new(500.0, 1000))?)
            .build();
        let fraud = start("fraud", FRAUD, config, Fraud).await?;

        let config = base("accounts", &options.listen[1])?
            .identity(accounts_identity)
            .rate_limiter(limiter(GovernorConfig::new(500.0, 1000))?)
            .secrets(FileSecrets::new(&secrets_dir)?)
            .wimse(WimseConfig::new(wit_keys).require(true))
            .txn_token(txn(false))
            .build();
        let accounts = start("accounts", ACCOUNTS, config, Accounts::with_demo_balances()).await?;

        let registry = StaticRegistry::new()
            .service(FRAUD, [fraud.addr.to_string()])?
            .service(ACCOUNTS, [accounts.addr.to_string()])?;
        let config = base("transfers", &options.listen[2])?
            .identity(transfers_identity)
            .rate_limiter(limiter(GovernorConfig::new(500.0, 1000))?)
            .registry(registry)
            .txn_token(txn(true))
            .build();
        let transfers = start("transfers", TRANSFERS, config, Transfers).await?;

        let registry = StaticRegistry::new()
            .service(TRANSFERS, [transfers.addr.to_string()])?
            .service(ACCOUNTS, [accounts.addr.to_string()])?;
        // Exchange rates: 3 at once per customer, then one every 5 s.
        let limits = GovernorConfig::new(500.0, 1000).with_override(LimitOverride::resource(
            "/v1/rates",
            0.2,
            3,
        ));
        // No mTLS listener: the gateway's callers are customers with access tokens.
        let config = builder("gateway")?
            .identity(gateway_identity)
            .rate_limiter(limiter(limits)?)
            .registry(registry)
            .gateway(GatewayConfig::new(options.listen[3].clone(), minter))
            .build();
        let gateway = start("gateway", GATEWAY, config, Gateway).await?;

        services.extend([fraud, accounts, transfers, gateway]);
        Ok(Self {
            services,
            dev,
            ca,
            transfers_jwt,
            idp,
            secrets_dir,
            audit_dir,
        })
    }

    /// The running service named `name`.
    ///
    /// # Panics
    /// Never for the four names of [`SERVICES`](crate::SERVICES), which [`start`](Self::start)
    /// always starts.
    pub fn service(&self, name: &str) -> &Running {
        #[allow(clippy::expect_used, reason = "start() starts every service or fails")]
        self.services
            .iter()
            .find(|s| s.name == name)
            .expect("one of the four bank services")
    }

    /// An access token of the demo identity provider for the customer `user` (its `sub`),
    /// valid for `lifetime`: what a customer's app would get from the bank's OIDC provider.
    pub fn access_token(&self, user: &str, lifetime: Duration) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.idp.sign_access_token(&serde_json::json!({
            "iss": IDP_ISSUER, "aud": API_AUDIENCE, "sub": user,
            "iat": now, "exp": now + lifetime.as_secs(), "scope": "bank",
        }))
    }

    /// Where the gateway listens.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.service("gateway").addr
    }

    /// Replaces the database user in the accounts service's secret, as an operator rotating
    /// the credentials would (the file secrets provider sees the change and revokes the
    /// cached value).
    ///
    /// # Errors
    /// The files could not be written.
    pub fn rotate_db_secret(&self, username: &str, password: &str) -> std::io::Result<()> {
        write_db_secret(&self.secrets_dir, username, password)
    }

    /// Shuts every service down in order, the gateway first; their audit logs are complete
    /// once this returns.
    pub async fn close(&self) {
        for service in self.services.iter().rev() {
            service.server.close().await;
        }
    }
}

async fn start<S: ligand::Service>(
    name: &'static str,
    id: &'static str,
    config: Config,
    service: S,
) -> Result<Running, BoxError> {
    let gateway = name == "gateway";
    let server = if gateway {
        ligand::init_trust_boundary(config).await?
    } else {
        ligand::init(config).await?
    };
    tokio::spawn({
        let server = server.clone();
        async move {
            if let Err(error) = server.serve(service).await {
                eprintln!("{name} stopped: {error}");
            }
        }
    });
    let addr = if gateway {
        server.gateway_addr().await
    } else {
        server.local_addr().await
    }
    .ok_or_else(|| format!("{name} never listened"))?;
    Ok(Running {
        name,
        id,
        server,
        addr,
    })
}

/// Writes the database credentials in the Kubernetes secret-volume layout (one file per key,
/// 0600), each file replaced by a rename so that a reader never sees half a value.
fn write_db_secret(root: &Path, username: &str, password: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = root.join(crate::DB_SECRET);
    std::fs::create_dir_all(&dir)?;
    for (key, value) in [("username", username), ("password", password)] {
        // Files starting with '.' are ignored by the provider: a safe place to write first.
        let staged = dir.join(format!(".{key}.new"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staged)?;
        file.write_all(value.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&staged, dir.join(key))?;
    }
    Ok(())
}
