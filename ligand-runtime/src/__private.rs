//! What generated code refers to. Not a public API: names here change without notice, and the
//! lint pass rejects their use outside generated code.

pub use crate::service::{Endpoint, Routes, Service, delete, get, patch, post, put};
pub use ::axum;
pub use ::serde;
pub use ::std::sync::Arc;
pub use ::tokio;

/// Runs an async `main` on a multi-threaded runtime: initializes from `config`, closes the
/// server on SIGTERM or ctrl-c, and returns the user main's result.
pub fn run_main<C, CF, M, MF, E>(config: C, user_main: M) -> Result<(), crate::Error>
where
    C: FnOnce() -> CF,
    CF: ::std::future::Future<Output = Result<crate::Config, E>>,
    E: Into<crate::BoxError>,
    M: FnOnce(crate::Server) -> MF,
    MF: ::std::future::Future<Output = Result<(), crate::Error>>,
{
    let runtime = ::tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Runtime(e.into()))?;
    runtime.block_on(async move {
        let config = config().await.map_err(|e| crate::Error::Config(e.into()))?;
        let server = crate::init(config).await?;
        let signals = server.clone();
        ::tokio::spawn(async move {
            crate::signal::shutdown_signal().await;
            tracing::info!("shutdown signal received");
            signals.close().await;
        });
        let result = user_main(server.clone()).await;
        server.close().await;
        result
    })
}

/// One `#[ligand::allow(rule, reason = "…")]` in the service's source, compiled into the
/// generated `main` by the lint pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// The file, relative to the crate's manifest directory.
    pub file: &'static str,
    /// The line of the attribute.
    pub line: u32,
    /// The rule id, such as `raw_socket`.
    pub rule: &'static str,
    /// Why the bypass is safe, as written.
    pub reason: &'static str,
}

/// Writes every allowance to the audit log (`ligand::audit`, one warning each), then runs the
/// service like [`run_main`].
pub fn run_main_with_allowances<C, CF, M, MF, E>(
    config: C,
    user_main: M,
    allowances: &'static [Allowance],
) -> Result<(), crate::Error>
where
    C: FnOnce() -> CF,
    CF: ::std::future::Future<Output = Result<crate::Config, E>>,
    E: Into<crate::BoxError>,
    M: FnOnce(crate::Server) -> MF,
    MF: ::std::future::Future<Output = Result<(), crate::Error>>,
{
    audit_allowances(allowances);
    run_main(config, user_main)
}

/// One `ligand::audit` warning per allowance.
pub fn audit_allowances(allowances: &[Allowance]) {
    for allowance in allowances {
        tracing::warn!(
            target: "ligand::audit",
            file = allowance.file,
            line = allowance.line,
            rule = allowance.rule,
            reason = allowance.reason,
            "lint rule `{}` allowed at {}:{}: {}",
            allowance.rule,
            allowance.file,
            allowance.line,
            allowance.reason,
        );
    }
}
