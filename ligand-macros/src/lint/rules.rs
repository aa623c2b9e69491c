//! The rules: their stable ids, the paths and crates each one bans, and the message that names
//! the framework path to use instead.

use std::fmt::{self, Display};

/// A lint rule. The id is what `#[ligand::allow(id, reason = "…")]` names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Rule {
    /// Sockets opened outside the framework's mTLS binding and transport.
    RawSocket,
    /// HTTP and RPC clients that call out without the framework's verified mTLS transport.
    HttpClient,
    /// Direct clients of the backends the framework owns: secrets, registry, limiter, identity.
    BackendClient,
    /// The framework's hidden internals, which only generated code may use.
    FrameworkInternals,
}

impl Rule {
    pub(crate) const ALL: [Rule; 4] = [
        Rule::RawSocket,
        Rule::HttpClient,
        Rule::BackendClient,
        Rule::FrameworkInternals,
    ];

    /// The stable id.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Rule::RawSocket => "raw_socket",
            Rule::HttpClient => "http_client",
            Rule::BackendClient => "backend_client",
            Rule::FrameworkInternals => "framework_internals",
        }
    }

    pub(crate) fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.id() == id)
    }

    /// What the rule protects and the framework path to use instead.
    pub(crate) fn advice(self) -> &'static str {
        match self {
            Rule::RawSocket => {
                "raw sockets bypass mTLS and policy; serve a #[ligand::service] with \
                 `ligand::Server::serve` and call other services through `#[ligand::client]` \
                 traits from `ligand::Ctx`"
            }
            Rule::HttpClient => {
                "outbound HTTP/RPC must go through the framework's verified mTLS transport; \
                 call other services through `#[ligand::client]` traits from `ligand::Ctx`"
            }
            Rule::BackendClient => {
                "the framework owns this backend; configure its provider in `ligand::Config` \
                 (secrets: `ligand::provider::Secrets`, registry: \
                 `ligand::provider::ServiceRegistry`, limits: `ligand::provider::RateLimiter`, \
                 identity: `ligand::provider::WorkloadIdentity`)"
            }
            Rule::FrameworkInternals => {
                "this is generated code's private interface; annotate an inherent impl with \
                 #[ligand::service] and serve it with `ligand::Server::serve`"
            }
        }
    }
}

impl Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Banned paths, by their canonical (resolved, crate-first) segments. A path is banned when one
/// of these is a prefix of it.
const BANNED_PATHS: &[(&[&str], Rule)] = &[
    (&["std", "net", "TcpStream"], Rule::RawSocket),
    (&["std", "net", "TcpListener"], Rule::RawSocket),
    (&["std", "net", "UdpSocket"], Rule::RawSocket),
    (&["std", "os", "unix", "net"], Rule::RawSocket),
    (&["tokio", "net"], Rule::RawSocket),
    (&["async_std", "net"], Rule::RawSocket),
    (&["async_std", "os", "unix", "net"], Rule::RawSocket),
    (&["async_net"], Rule::RawSocket),
    (&["smol", "net"], Rule::RawSocket),
    (&["smol", "Async"], Rule::RawSocket),
    (&["async_io", "Async"], Rule::RawSocket),
    (&["tokio_uring", "net"], Rule::RawSocket),
    (&["glommio", "net"], Rule::RawSocket),
    (&["monoio", "net"], Rule::RawSocket),
    (&["compio", "net"], Rule::RawSocket),
    (&["compio_net"], Rule::RawSocket),
    (&["may", "net"], Rule::RawSocket),
    (&["socket2"], Rule::RawSocket),
    (&["net2"], Rule::RawSocket),
    (&["mio", "net"], Rule::RawSocket),
    (&["nix", "sys", "socket"], Rule::RawSocket),
    (&["rustix", "net"], Rule::RawSocket),
    (&["windows_sys", "Win32", "Networking"], Rule::RawSocket),
    (&["windows", "Win32", "Networking"], Rule::RawSocket),
    (&["winapi", "um", "winsock2"], Rule::RawSocket),
    (&["winapi", "um", "ws2tcpip"], Rule::RawSocket),
    (&["reqwest"], Rule::HttpClient),
    (&["hyper", "client"], Rule::HttpClient),
    (&["hyper_util", "client"], Rule::HttpClient),
    (&["ureq"], Rule::HttpClient),
    (&["isahc"], Rule::HttpClient),
    (&["surf"], Rule::HttpClient),
    (&["attohttpc"], Rule::HttpClient),
    (&["curl"], Rule::HttpClient),
    (&["h2", "client"], Rule::HttpClient),
    (&["tonic", "transport", "Channel"], Rule::HttpClient),
    (&["tonic", "transport", "Endpoint"], Rule::HttpClient),
    (&["vaultrs"], Rule::BackendClient),
    (&["hashicorp_vault"], Rule::BackendClient),
    (&["etcd_client"], Rule::BackendClient),
    (&["redis"], Rule::BackendClient),
    (&["fred"], Rule::BackendClient),
    (&["spiffe", "workload_api"], Rule::BackendClient),
    (&["spiffe", "WorkloadApiClient"], Rule::BackendClient),
    (&["spiffe", "x509_source"], Rule::BackendClient),
    (&["spiffe", "X509Source"], Rule::BackendClient),
    (&["spiffe", "X509SourceBuilder"], Rule::BackendClient),
    (&["spiffe", "jwt_source"], Rule::BackendClient),
    (&["spiffe", "JwtSource"], Rule::BackendClient),
    (&["spiffe", "JwtSourceBuilder"], Rule::BackendClient),
    (&["spiffe", "broker_api"], Rule::BackendClient),
    (&["ligand", "__private"], Rule::FrameworkInternals),
    (&["ligand_runtime", "__private"], Rule::FrameworkInternals),
];

/// The C library's socket calls, banned as `libc::<name>` and as functions a crate declares in
/// its own `extern` block.
pub(crate) const SOCKET_SYMBOLS: &[&str] = &[
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "send",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recv",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "SYS_socket",
    "SYS_socketpair",
    "SYS_socketcall",
    "SYS_connect",
    "SYS_bind",
    "SYS_listen",
    "SYS_accept",
    "SYS_accept4",
    "SYS_sendto",
    "SYS_sendmsg",
    "SYS_sendmmsg",
    "SYS_recvfrom",
    "SYS_recvmsg",
    "SYS_recvmmsg",
];

/// Crates whose socket calls are banned by [`SOCKET_SYMBOLS`].
const FFI_CRATES: &[&str] = &["libc"];

/// The trait that only `#[ligand::service]` implements.
const SERVICE_TRAITS: &[&[&str]] = &[
    &["ligand", "Service"],
    &["ligand_runtime", "Service"],
    &["ligand", "__private", "Service"],
    &["ligand_runtime", "__private", "Service"],
];

/// The method name only generated code defines and calls.
pub(crate) const ROUTES_METHOD: &str = "__ligand_routes";

/// The rule a resolved path breaks, if any.
pub(crate) fn check_path<S: AsRef<str>>(path: &[S]) -> Option<Rule> {
    if let [krate, symbol, ..] = path
        && FFI_CRATES.contains(&krate.as_ref())
        && SOCKET_SYMBOLS.contains(&symbol.as_ref())
    {
        return Some(Rule::RawSocket);
    }
    BANNED_PATHS.iter().find_map(|(banned, rule)| {
        let prefix = path.len() >= banned.len()
            && banned
                .iter()
                .zip(path)
                .all(|(banned, segment)| *banned == segment.as_ref());
        prefix.then_some(*rule)
    })
}

/// One segment of a path in a `macro_rules!` body: a name, or a metavariable (`$m`) that the
/// caller fills with one or more segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Name(String),
    Meta,
}

/// Type names that say "socket" wherever they appear after a banned prefix.
const SOCKET_TYPES: &[&str] = &[
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "UnixListener",
    "UnixDatagram",
    "Socket",
];

/// Crate roots whose banned paths are a small part of a large API: a metavariable right after
/// one of them says nothing by itself (`std::$int::MAX`, `tokio::$f(…)`, `#[ligand::$verb]`).
const BROAD_ROOTS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "ligand",
    "ligand_runtime",
    "tokio",
    "hyper",
    "hyper_util",
    "h2",
    "tonic",
    "spiffe",
];

/// The rule a path with metavariables can break once its caller fills them, if any: some
/// filling spells a banned path and a written name takes part in it (`std::$m::TcpStream`,
/// `$krate::net::UdpSocket`, `libc::$call`). A path of metavariables alone says nothing.
pub(crate) fn check_pattern(pattern: &[Segment]) -> Option<Rule> {
    let ffi = FFI_CRATES.iter().flat_map(|krate| {
        SOCKET_SYMBOLS
            .iter()
            .map(move |symbol| (vec![*krate, *symbol], Rule::RawSocket))
    });
    let paths = BANNED_PATHS
        .iter()
        .map(|(banned, rule)| (banned.to_vec(), *rule))
        .chain(ffi);
    for (banned, rule) in paths {
        if spells(pattern, &banned, 0, false) {
            return Some(rule);
        }
    }
    None
}

/// Whether `pattern` can spell a path starting with `banned[at..]`, with a written name
/// matched (`named`) somewhere that counts.
fn spells(pattern: &[Segment], banned: &[&str], at: usize, named: bool) -> bool {
    let Some(next) = banned.get(at) else {
        // Past the banned prefix, a socket type's name counts too (`tokio::$m::TcpStream`).
        return named
            || pattern.iter().any(
                |segment| matches!(segment, Segment::Name(name) if SOCKET_TYPES.contains(&name.as_str())),
            );
    };
    match pattern.split_first() {
        None => false,
        Some((Segment::Name(name), rest)) => {
            let counts = at > 0 || !BROAD_ROOTS.contains(next);
            name == next && spells(rest, banned, at + 1, named || counts)
        }
        // A metavariable stands for one or more segments, possibly past the banned path.
        Some((Segment::Meta, rest)) => {
            (at + 1..=banned.len()).any(|end| spells(rest, banned, end, named))
        }
    }
}

/// Whether a resolved trait path is the framework's `Service` trait.
pub(crate) fn is_service_trait<S: AsRef<str>>(path: &[S]) -> bool {
    SERVICE_TRAITS.iter().any(|service| {
        service.len() == path.len()
            && service
                .iter()
                .zip(path)
                .all(|(service, segment)| *service == segment.as_ref())
    })
}

/// Crates banned as dependencies whatever their features.
const BANNED_CRATES: &[(&str, Rule)] = &[
    ("socket2", Rule::RawSocket),
    ("net2", Rule::RawSocket),
    ("async-net", Rule::RawSocket),
    ("reqwest", Rule::HttpClient),
    ("ureq", Rule::HttpClient),
    ("isahc", Rule::HttpClient),
    ("surf", Rule::HttpClient),
    ("attohttpc", Rule::HttpClient),
    ("curl", Rule::HttpClient),
    ("vaultrs", Rule::BackendClient),
    ("hashicorp_vault", Rule::BackendClient),
    ("etcd-client", Rule::BackendClient),
    ("redis", Rule::BackendClient),
    ("fred", Rule::BackendClient),
];

/// Crates banned as dependencies only with one of these features, the ones that build the
/// client or the socket layer.
const BANNED_FEATURES: &[(&str, &[&str], Rule)] = &[
    ("hyper", &["client"], Rule::HttpClient),
    ("hyper-util", &["client", "client-legacy"], Rule::HttpClient),
    ("mio", &["net"], Rule::RawSocket),
    ("nix", &["socket", "net"], Rule::RawSocket),
    ("rustix", &["net"], Rule::RawSocket),
    (
        "spiffe",
        &[
            "workload-api",
            "workload-api-core",
            "workload-api-x509",
            "workload-api-jwt",
            "x509-source",
            "jwt-source",
            "broker-api",
            "transport-grpc",
        ],
        Rule::BackendClient,
    ),
];

/// The rule a dependency on `package` with `features` breaks, if any. Package names compare
/// with `-` and `_` as equal, as Cargo does.
pub(crate) fn check_dependency(package: &str, features: &[String]) -> Option<Rule> {
    let package = package.replace('-', "_");
    let same = |name: &str| name.replace('-', "_") == package;
    if let Some((_, rule)) = BANNED_CRATES.iter().find(|(name, _)| same(name)) {
        return Some(*rule);
    }
    BANNED_FEATURES.iter().find_map(|(name, banned, rule)| {
        let hit = same(name)
            && features
                .iter()
                .any(|feature| banned.contains(&feature.as_str()));
        hit.then_some(*rule)
    })
}
