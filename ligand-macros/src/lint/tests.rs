//! The lint over source text: every rule, every evasion form, allowances.

use std::collections::HashMap;

use proptest::prelude::*;

use super::analyze;
use super::rules::Rule;
use super::visit::{Finding, Problem};

fn findings(source: &str, renames: &[(&str, &str)]) -> Vec<Finding> {
    let file = syn::parse_file(source).expect("test source parses");
    let renames: HashMap<_, _> = renames
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    analyze(&file.items, &renames, 0, true).findings
}

/// The rule findings; any other problem fails the test.
fn lint_with(source: &str, renames: &[(&str, &str)]) -> Vec<(Rule, String, usize)> {
    findings(source, renames)
        .into_iter()
        .map(|f| {
            let rule = f.rule().unwrap_or_else(|| panic!("{}", f.message()));
            (rule, f.written, f.line)
        })
        .collect()
}

fn problems(source: &str) -> Vec<Problem> {
    findings(source, &[])
        .into_iter()
        .map(|f| f.problem)
        .collect()
}

fn lint(source: &str) -> Vec<Rule> {
    lint_with(source, &[])
        .into_iter()
        .map(|(rule, ..)| rule)
        .collect()
}

fn assert_flags(source: &str, rule: Rule) {
    let found = lint(source);
    assert!(
        !found.is_empty() && found.iter().all(|found| *found == rule),
        "expected only {rule} in\n{source}\nfound {found:?}"
    );
}

fn assert_clean(source: &str) {
    let found = lint_with(source, &[]);
    assert!(
        found.is_empty(),
        "expected nothing in\n{source}\nfound {found:?}"
    );
}

// === rules ===

#[test]
fn raw_sockets() {
    assert_flags(
        "fn f() { std::net::TcpStream::connect(\"a:1\"); }",
        Rule::RawSocket,
    );
    assert_flags(
        "fn f() { let _ = std::net::TcpListener::bind(\"a:1\"); }",
        Rule::RawSocket,
    );
    assert_flags(
        "fn f() { std::net::UdpSocket::bind(\"a:1\"); }",
        Rule::RawSocket,
    );
    assert_flags(
        "async fn f() { tokio::net::TcpStream::connect(\"a:1\").await; }",
        Rule::RawSocket,
    );
    assert_flags(
        "fn f() { async_std::net::TcpStream::connect(\"a:1\"); }",
        Rule::RawSocket,
    );
    assert_flags("fn f() { socket2::Socket::new(); }", Rule::RawSocket);
    assert_flags(
        "fn f() { mio::net::TcpStream::connect(a); }",
        Rule::RawSocket,
    );
    assert_flags(
        "fn f() { std::os::unix::net::UnixStream::connect(\"/s\"); }",
        Rule::RawSocket,
    );
}

#[test]
fn http_clients() {
    for path in [
        "reqwest::get",
        "hyper::client::conn::http1::handshake",
        "hyper_util::client::legacy::Client::builder",
        "ureq::get",
        "isahc::get",
        "surf::get",
        "attohttpc::get",
        "curl::easy::Easy::new",
        "h2::client::handshake",
        "tonic::transport::Channel::from_static",
        "tonic::transport::Endpoint::from_static",
    ] {
        assert_flags(&format!("fn f() {{ {path}(); }}"), Rule::HttpClient);
    }
}

#[test]
fn backend_clients() {
    for path in [
        "vaultrs::client::VaultClient::new",
        "hashicorp_vault::Client::new",
        "etcd_client::Client::connect",
        "redis::Client::open",
        "fred::clients::Client::new",
        "spiffe::WorkloadApiClient::connect_env",
        "spiffe::workload_api::client::WorkloadApiClient::default",
        "spiffe::X509Source::new",
        "spiffe::JwtSource::new",
    ] {
        assert_flags(&format!("fn f() {{ {path}(); }}"), Rule::BackendClient);
    }
}

#[test]
fn framework_internals() {
    assert_flags(
        "fn f() { ligand::__private::Routes::new(1); }",
        Rule::FrameworkInternals,
    );
    assert_flags(
        "use ligand_runtime::__private::get;",
        Rule::FrameworkInternals,
    );
    assert_flags(
        "fn f(s: S) { s.__ligand_routes(); }",
        Rule::FrameworkInternals,
    );
    assert_flags("impl ligand::Service for S {}", Rule::FrameworkInternals);
    let found = lint("use ligand::Service;\nimpl Service for S {}");
    assert_eq!(found, [Rule::FrameworkInternals]);
}

#[test]
fn legitimate_code_is_clean() {
    assert_clean(
        r#"
        use std::net::{IpAddr, SocketAddr};
        use std::net::*;
        use ligand::prelude::*;
        use ligand::Service;
        async fn f(server: ligand::Server) -> Option<SocketAddr> {
            let _ip: IpAddr = "127.0.0.1".parse().unwrap();
            tokio::spawn(async {});
            let _ = Ipv4Addr::LOCALHOST;
            let _ = spiffe::SpiffeId::new("spiffe://a/b");
            server.local_addr().await
        }
        fn assert<S: Service>() {}
        "#,
    );
}

// === evasions ===

#[test]
fn use_with_rename() {
    let found = lint_with(
        "use std::net::TcpStream as Conn;\nfn f() { Conn::connect(\"a:1\"); }",
        &[],
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[1], (Rule::RawSocket, "Conn::connect".to_owned(), 2));
}

#[test]
fn glob_imports() {
    let found = lint_with(
        "use std::net::*;\nfn f() { TcpStream::connect(\"a:1\"); }",
        &[],
    );
    assert_eq!(
        found,
        [(Rule::RawSocket, "TcpStream::connect".to_owned(), 2)]
    );
    assert_flags(
        "use tokio::*;\nfn f() { net::TcpStream::connect(\"a:1\"); }",
        Rule::RawSocket,
    );
    assert_flags("use tokio::net::*;", Rule::RawSocket);
}

#[test]
fn grouped_imports() {
    let found = lint("use std::{io, net::{self, TcpListener, UdpSocket as U}};");
    assert_eq!(found, [Rule::RawSocket, Rule::RawSocket]);
    assert_flags(
        "use std::net;\nfn f() { net::TcpStream::connect(\"a\"); }",
        Rule::RawSocket,
    );
}

#[test]
fn fully_qualified_expressions_and_types() {
    assert_flags("fn f(s: ::std::net::TcpStream) {}", Rule::RawSocket);
    assert_flags("struct S { c: Option<reqwest::Client> }", Rule::HttpClient);
    assert_flags(
        "fn f() -> impl Into<redis::Client> { todo!() }",
        Rule::BackendClient,
    );
    assert_flags(
        "fn f() { let _ = <reqwest::Client as Default>::default(); }",
        Rule::HttpClient,
    );
}

#[test]
fn extern_crate_aliases() {
    let found = lint("extern crate reqwest as web;\nfn f() { web::get(\"u\"); }");
    assert_eq!(found, [Rule::HttpClient, Rule::HttpClient]);
}

#[test]
fn reexports_through_local_modules() {
    assert_flags(
        "mod net { pub use std::net::*; }\nfn f() { net::TcpStream::connect(\"a\"); }",
        Rule::RawSocket,
    );
    assert_flags(
        "mod a { pub use std::net::TcpStream as T; }\nmod b { fn f() { super::a::T::connect(\"x\"); } }",
        Rule::RawSocket,
    );
    assert_flags(
        "mod a { pub mod b { pub use reqwest as web; } }\nuse crate::a::b::*;\nfn f() { web::get(\"u\"); }",
        Rule::HttpClient,
    );
    assert_flags(
        "mod a { pub use tokio::net; }\nuse a::net as n;\nfn f() { n::UdpSocket::bind(\"x\"); }",
        Rule::RawSocket,
    );
}

#[test]
fn async_blocks_closures_and_block_scopes() {
    assert_flags(
        "fn f() { let _ = async { tokio::net::TcpStream::connect(\"a\").await }; }",
        Rule::RawSocket,
    );
    assert_flags(
        "fn f() { let c = || std::net::UdpSocket::bind(\"a\"); }",
        Rule::RawSocket,
    );
    let found =
        lint("fn f() { use std::net::TcpStream as T; let _ = || async { T::connect(\"a\") }; }");
    assert_eq!(found, [Rule::RawSocket, Rule::RawSocket]);
}

#[test]
fn macro_bodies() {
    assert_flags(
        "fn f() { println!(\"{:?}\", std::net::TcpStream::connect(\"a\")); }",
        Rule::RawSocket,
    );
    assert_flags(
        "async fn f() { tokio::select! { _ = tokio::net::TcpStream::connect(\"a\") => {} } }",
        Rule::RawSocket,
    );
    assert_flags("fn f() { reqwest::blocking::get!(); }", Rule::HttpClient);
}

#[test]
fn use_of_the_crate_itself() {
    let found = lint("use reqwest;\nfn f() { reqwest::get(\"u\"); }");
    assert_eq!(found, [Rule::HttpClient, Rule::HttpClient]);
}

#[test]
fn renamed_dependencies() {
    let found = lint_with("fn f() { http::get(\"u\"); }", &[("http", "reqwest")]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, Rule::HttpClient);
    assert!(lint_with("fn f() { reqwest::get(\"u\"); }", &[("reqwest", "my_http")]).is_empty());
}

#[test]
fn local_names_shadow_crates() {
    assert_clean("mod redis { pub fn open() {} }\nfn f() { redis::open(); }");
    assert_clean(
        "use crate::tokio::net::TcpStream;\nmod tokio { pub mod net { pub struct TcpStream; } }",
    );
}

// === allowances ===

#[test]
fn allow_suppresses_its_rule_inside_the_item() {
    let source = r#"
        #[ligand::allow(raw_socket, reason = "health probe of a sidecar")]
        mod probe {
            fn f() { std::net::TcpStream::connect("a"); }
        }
        #[ligand::allow(http_client, backend_client, reason = "legacy")]
        fn g() { std::net::UdpSocket::bind("a"); reqwest::get("u"); redis::Client::open("r"); }
    "#;
    let file = syn::parse_file(source).expect("parses");
    let analysis = analyze(&file.items, &HashMap::new(), 0, true);
    let rules: Vec<_> = analysis.findings.iter().filter_map(|f| f.rule()).collect();
    assert_eq!(rules, [Rule::RawSocket]);
    let granted: Vec<_> = analysis
        .allowances
        .iter()
        .map(|g| (g.line, g.allow.rules.clone(), g.allow.reason.clone()))
        .collect();
    assert_eq!(
        granted,
        [
            (
                2,
                vec![Rule::RawSocket],
                "health probe of a sidecar".to_owned()
            ),
            (
                6,
                vec![Rule::HttpClient, Rule::BackendClient],
                "legacy".to_owned()
            ),
        ]
    );
}

#[test]
fn invalid_allowances_allow_nothing() {
    for attr in [
        "#[ligand::allow(raw_socket)]",
        "#[ligand::allow(raw_socket, reason = \"\")]",
        "#[ligand::allow(raw_socket, reason = \"  \")]",
        "#[ligand::allow(raw_sockets, reason = \"typo\")]",
        "#[ligand::allow(raw_socket, reason = \"x\", extra = 1)]",
        "#[ligand::allow(reason = \"no rule\")]",
        "#[allow(raw_socket)]",
    ] {
        let found = lint(&format!(
            "{attr}\nfn f() {{ std::net::TcpStream::connect(\"a\"); }}"
        ));
        assert_eq!(found, [Rule::RawSocket], "{attr}");
    }
}

#[test]
fn cfg_test_items_are_not_the_service() {
    assert_clean("#[cfg(test)]\nmod tests { use reqwest::Client; }");
    assert_flags(
        "#[cfg(feature = \"x\")]\nmod m { use reqwest::Client; }",
        Rule::HttpClient,
    );
}

#[test]
fn self_linted_items_are_left_to_their_macro() {
    // What the service macro sees on its own is reported there, at the span.
    assert_clean(
        "#[ligand::service]\nimpl S { fn f(&self) { std::net::TcpStream::connect(\"a\"); } }",
    );
    assert_clean("#[ligand::main(config = c)]\nasync fn main(s: Server) { reqwest::get(\"u\"); }");
    assert_clean(
        "#[ligand::client(service = \"spiffe://td/s\")]\ntrait C { fn f(&self) -> reqwest::Client; }",
    );
    assert_eq!(
        lint_with(
            "#[other::client]\ntrait C { fn f(&self) -> reqwest::Client; }",
            &[]
        )
        .len(),
        1
    );
    // What needs the rest of the file is reported by the crate scan.
    let found = lint_with(
        "use std::net as n;\n#[ligand::service]\nimpl S { fn f(&self) { n::TcpStream::connect(\"a\"); } }",
        &[],
    );
    assert_eq!(
        found,
        [(Rule::RawSocket, "n::TcpStream::connect".to_owned(), 3)]
    );
}

#[test]
fn positions_are_one_based() {
    let file = syn::parse_file("fn f() {\n    let _ = reqwest::get(\"u\");\n}").expect("parses");
    let analysis = analyze(&file.items, &HashMap::new(), 0, false);
    let finding = &analysis.findings[0];
    assert_eq!((finding.line, finding.column), (2, 13));
    assert!(
        finding
            .message()
            .starts_with("[http_client] `reqwest::get` is not allowed")
    );
    assert!(finding.message().contains("#[ligand::client]"));
}

// === fail closed ===

#[test]
fn ffi_socket_calls() {
    assert_flags(
        "fn f() -> i32 { unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) } }",
        Rule::RawSocket,
    );
    assert_flags(
        "use libc::connect as c;\nfn f() { unsafe { c(3, p, 16) }; }",
        Rule::RawSocket,
    );
    assert_flags(
        "fn f() { unsafe { libc::syscall(libc::SYS_socket, 2, 1, 0) }; }",
        Rule::RawSocket,
    );
    assert_flags(
        "fn f() { nix::sys::socket::socket(a, b, c, d); }",
        Rule::RawSocket,
    );
    assert_flags("fn f() { rustix::net::socket(a, b, c); }", Rule::RawSocket);
    assert_flags(
        "unsafe extern \"C\" { fn socket(d: i32, t: i32, p: i32) -> i32; }",
        Rule::RawSocket,
    );
    assert_flags(
        "unsafe extern \"C\" { #[link_name = \"connect\"] fn dial(fd: i32) -> i32; }",
        Rule::RawSocket,
    );
    assert_clean("fn f() { let _ = unsafe { libc::getpid() }; }");
    assert_clean("unsafe extern \"C\" { fn getpid() -> i32; }");
}

#[test]
fn async_runtime_networking() {
    for path in [
        "async_net::TcpStream::connect",
        "smol::net::TcpStream::connect",
        "smol::Async::<T>::connect",
        "async_io::Async::new",
        "async_std::net::UdpSocket::bind",
        "async_std::os::unix::net::UnixStream::connect",
        "tokio_uring::net::TcpStream::connect",
        "glommio::net::TcpStream::connect",
        "monoio::net::TcpStream::connect",
        "compio::net::TcpStream::connect",
        "mio::net::TcpListener::bind",
        "socket2::Socket::new",
        "net2::TcpBuilder::new_v4",
    ] {
        assert_flags(&format!("fn f() {{ {path}(); }}"), Rule::RawSocket);
    }
    assert_flags(
        "use smol::net as n;\nfn f() { n::TcpStream::connect(\"a\"); }",
        Rule::RawSocket,
    );
    assert_clean("fn f() { smol::block_on(async {}); async_io::Timer::after(d); }");
}

#[test]
fn macro_rules_metavariables_spelling_banned_paths() {
    assert_flags(
        "macro_rules! m { ($m:ident) => { std::$m::TcpStream::connect(\"a\") }; }",
        Rule::RawSocket,
    );
    assert_flags(
        "macro_rules! m { ($k:ident) => { $k::net::UdpSocket::bind(\"a\") }; }",
        Rule::RawSocket,
    );
    assert_flags(
        "macro_rules! m { ($p:path) => { $p::TcpListener::bind(\"a\") }; }",
        Rule::RawSocket,
    );
    assert_flags(
        "macro_rules! m { ($f:ident) => { unsafe { libc::$f(2, 1, 0) } }; }",
        Rule::RawSocket,
    );
    assert_flags(
        "use std as s;\nmacro_rules! m { ($t:ident) => { s::net::$t::connect(\"a\") }; }",
        Rule::RawSocket,
    );
    assert_flags(
        "macro_rules! m { ($m:ident) => { tokio::$m::TcpStream::connect(\"a\") }; }",
        Rule::RawSocket,
    );
    assert_flags(
        "macro_rules! m { ($($m:ident),*) => { $( std::$m::TcpStream::connect(\"a\"); )* }; }",
        Rule::RawSocket,
    );
    // Metavariables that spell nothing banned, or next to broad crates only.
    assert_clean(
        r#"
        macro_rules! m {
            ($t:ty, $e:expr, $int:ident, $verb:ident) => {
                let _ = <$t>::default();
                let _ = $e;
                let _ = std::$int::MAX;
                let _ = $crate::util::helper();
                tokio::$verb(async {});
            };
        }
        "#,
    );
}

#[test]
fn modules_declared_inside_macros_are_unverified() {
    assert_eq!(
        problems("cfg_if::cfg_if! { if #[cfg(unix)] { #[path = \"x.rs\"] mod x; } }"),
        [Problem::ModuleInMacro]
    );
    assert_eq!(
        problems("macro_rules! m { ($n:ident) => { mod $n; }; }"),
        [Problem::ModuleInMacro]
    );
    assert_clean("macro_rules! m { () => { mod inline { pub fn f() {} } }; }");
}

#[test]
fn unfollowed_includes_are_unverified() {
    // The crate scan splices module-level inclusions; any left here is unknown code.
    assert_eq!(
        problems("fn f() { include!(\"dial.rs\"); }"),
        [Problem::Include]
    );
    assert_eq!(
        problems("use std::include as inc;\ninc!(\"dial.rs\");"),
        [Problem::Include]
    );
    assert_clean("fn f() -> &'static str { include_str!(\"notes.txt\") }");
}

#[test]
fn reexport_chains_past_the_limit_are_unverified() {
    let mut source = String::new();
    for i in 0..60 {
        source.push_str(&format!("mod m{i} {{ pub use super::m{}::n; }}\n", i + 1));
    }
    source.push_str("mod m60 { pub use std::net as n; }\n");
    // Far more than rustc compiles in reasonable time (it slows exponentially past twenty).
    source.push_str("fn f() { m0::n::TcpStream::connect(\"a\"); }\n");
    let found = findings(&source, &[]);
    assert!(
        found.iter().all(|f| f.problem == Problem::Unresolved),
        "{found:?}"
    );
    let last = found.last().expect("the call is reported");
    assert_eq!(
        (last.written.as_str(), last.line),
        ("m0::n::TcpStream::connect", 62)
    );
    assert!(
        last.message()
            .starts_with("[unverified] `m0::n::TcpStream::connect` could not be resolved")
    );
    // A chain within the limit resolves, and is banned.
    assert_flags(
        "mod a { pub use super::b::n; }\nmod b { pub use std::net as n; }\nfn f() { a::n::TcpStream::connect(\"a\"); }",
        Rule::RawSocket,
    );
}

proptest! {
    #[test]
    fn lint_never_panics_on_parsable_code(
        segments in proptest::collection::vec("[a-z_]{1,8}", 1..6),
        glob in any::<bool>(),
    ) {
        let path = segments.join("::");
        let source = if glob {
            format!("use {path}::*;\nmod m {{ pub use super::*; }}\nfn f() {{ m::x::y(); }}")
        } else {
            format!("use {path} as z;\nfn f() {{ z::q(); {path}(); }}")
        };
        if let Ok(file) = syn::parse_file(&source) {
            let _ = analyze(&file.items, &HashMap::new(), 0, true);
        }
    }
}
