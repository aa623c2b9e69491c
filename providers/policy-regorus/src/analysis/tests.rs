use std::collections::BTreeSet;

use regorus::unstable::BUILTINS;

use super::pure::PURE_BUILTINS;
use super::*;

const RBAC: &str = include_str!("../../benches/rbac/ligand/authz/policy.rego");

/// The same shape as the module `Compiled::new` adds: comprehensions over `data` rules only.
const DECISION: &str = "package ligand_decision__\n\nimport rego.v1\n\n\
     decision := [{value | value := data.ligand.authz.allow}, \
     {value | value := data.ligand.authz.reason}]\n";

/// Analyses `(file, source)` modules as the engine parses them.
fn analyse_modules(modules: &[(&str, &str)]) -> Analysis {
    let mut engine = regorus::Engine::new();
    for (file, source) in modules {
        if let Err(error) = engine.add_policy((*file).to_owned(), (*source).to_owned()) {
            panic!("{file} does not parse: {error}\n{source}");
        }
    }
    analyse(engine.get_modules())
}

/// Analyses one module of package `p` made of `rules`.
fn analyse_rules(rules: &str) -> Analysis {
    analyse_modules(&[(
        "test.rego",
        &format!("package p\n\nimport rego.v1\n\n{rules}\n"),
    )])
}

/// [`InputReads::Paths`] from string slices, in the order given.
fn paths(paths: &[&[&str]]) -> InputReads {
    InputReads::Paths(
        paths
            .iter()
            .map(|path| path.iter().map(|key| (*key).to_owned()).collect())
            .collect(),
    )
}

/// Asserts the reads of each policy in `cases`, and that each is pure.
fn assert_reads(cases: &[(&str, InputReads)]) {
    for (rules, expected) in cases {
        let analysis = analyse_rules(rules);
        assert_eq!(&analysis.reads, expected, "{rules}");
        assert_eq!(analysis.impure, None, "{rules}");
    }
}

// === input reads ===

#[test]
fn a_reference_reads_its_longest_literal_prefix() {
    assert_reads(&[
        (
            "x := input.resource.value",
            paths(&[&["resource", "value"]]),
        ),
        (
            "x := input[\"request\"].path",
            paths(&[&["request", "path"]]),
        ),
        ("x := input[`request`].path", paths(&[&["request", "path"]])),
        ("x := input.chain[_].workload", paths(&[&["chain"]])),
        ("x := input.chain[0].workload", paths(&[&["chain"]])),
        ("x := input.a[true].b", paths(&[&["a"]])),
        (
            "x := input.a[\"b\"][c].d if some c in [1]",
            paths(&[&["a", "b"]]),
        ),
        ("x := input[\"a.b\"].c", paths(&[&["a.b", "c"]])),
    ]);
}

#[test]
fn an_index_ends_the_path_and_is_walked() {
    assert_reads(&[
        ("x := input.a[input.b]", paths(&[&["a"], &["b"]])),
        ("x := input.a[input.b.c].d", paths(&[&["a"], &["b", "c"]])),
        ("x := data.q[input.a]", paths(&[&["a"]])),
        ("x := data.q[input.a].b", paths(&[&["a"]])),
        ("x := [1][count(input.a)]", paths(&[&["a"]])),
    ]);
}

#[test]
fn a_reference_rooted_elsewhere_walks_its_root() {
    assert_reads(&[
        ("x := object.get(input.a, \"b\", {}).c", paths(&[&["a"]])),
        ("x := [v | some v in input.a][0]", paths(&[&["a"]])),
        ("x := {\"k\": input.a}.k", paths(&[&["a"]])),
    ]);
}

#[test]
fn bare_input_reads_the_whole_document() {
    for rules in [
        "x := input",
        "x if count(input) > 0",
        "x := json.marshal(input)",
        "x := object.get(input, \"a\", 1)",
        "x := [p | walk(input, [p, _])]",
        "x if input == {}",
        "x if { some v in input; v }",
        "x if { {\"a\": v} = input; v }",
        "x := [input]",
        "f(y) := y\nx := f(input)",
        "x := input[y] if some y in [\"a\"]",
        "x := input[_]",
        "x := input[0]",
    ] {
        assert_eq!(analyse_rules(rules).reads, InputReads::Whole, "{rules}");
    }
}

#[test]
fn with_input_reads_the_whole_document() {
    for rules in [
        "y := 1\nx if { y with input as {} }",
        "y := 1\nx if { y with input.a as 1 }",
        "y := 1\nx if { y with input[\"a\"].b as 1 }",
        "import input.a as c\ny := 1\nx if { y with c.b as 1 }",
    ] {
        assert_eq!(analyse_rules(rules).reads, InputReads::Whole, "{rules}");
    }
}

#[test]
fn imports_of_input() {
    assert_eq!(
        analyse_rules("import input\nx := 1").reads,
        InputReads::Whole
    );
    assert_eq!(
        analyse_rules("import input as i\nx := i.a").reads,
        InputReads::Whole
    );
    assert_reads(&[
        ("import input.a.b\nx := 1", paths(&[&["a", "b"]])),
        (
            "import input.a.b\nx := b.c[d] if some d in [1]",
            paths(&[&["a", "b"]]),
        ),
        ("import input.a.b as c\nx := c", paths(&[&["a", "b"]])),
        ("import input[\"a\"]\nx := 1", paths(&[&["a"]])),
        ("import data.q\nx := q.r", paths(&[])),
    ]);
}

#[test]
fn a_variable_named_input_counts_as_input() {
    for rules in [
        "x if { some input; input.a }",
        "x if every input in [1] { true }",
        "x if every input, v in [1] { v > 0 }",
        "import data.q as input\nx := 1",
        "f(input) := 1",
    ] {
        assert_eq!(analyse_rules(rules).reads, InputReads::Whole, "{rules}");
    }
}

#[test]
fn data_is_not_input() {
    assert_reads(&[
        ("x := data.input.a", paths(&[])),
        ("x := data[\"input\"]", paths(&[])),
        ("y := 1\nx := data.p.y", paths(&[])),
        ("y := 1\nx if { y with data.q as 1 }", paths(&[])),
    ]);
}

#[test]
fn paths_are_sorted_and_prefix_minimal() {
    assert_reads(&[
        (
            "x := [input.b.c, input.a.b, input.ab, input.a, input.b.d, input.a.b.c]",
            paths(&[&["a"], &["ab"], &["b", "c"], &["b", "d"]]),
        ),
        ("x := input.a.b\ny := input.a.b", paths(&[&["a", "b"]])),
    ]);
}

/// Each case reads `input` in exactly one position, so a position the walk skips fails
/// its case.
#[test]
fn every_position_is_walked() {
    assert_reads(&[
        // Rule heads and bodies.
        ("x := input.a", paths(&[&["a"]])),
        ("x = input.a", paths(&[&["a"]])),
        ("x if input.a", paths(&[&["a"]])),
        ("s contains input.a if true", paths(&[&["a"]])),
        ("o[input.a] := 1", paths(&[&["a"]])),
        ("o[k] := 1 if some k in input.a", paths(&[&["a"]])),
        ("o[k] := input.a[k] if some k in [1]", paths(&[&["a"]])),
        ("default d := input.a", paths(&[&["a"]])),
        ("f(x) := input.a if x", paths(&[&["a"]])),
        ("f(x) := y if y := input.a[x]", paths(&[&["a"]])),
        ("f(x) := 1 if { x; input.a }", paths(&[&["a"]])),
        ("r := 1 if false else := input.a", paths(&[&["a"]])),
        ("r := 1 if false else := 2 if input.a", paths(&[&["a"]])),
        (
            "r := 1 if false else := 2 if false else := input.a",
            paths(&[&["a"]]),
        ),
        // Literals.
        ("x if not input.a", paths(&[&["a"]])),
        ("x if { some v in input.a; v }", paths(&[&["a"]])),
        ("x if { some k, v in input.a; k == v }", paths(&[&["a"]])),
        ("x if some input.a, v in {1: 2}", paths(&[&["a"]])),
        ("x if some k, input.a in {1: 2}", paths(&[&["a"]])),
        ("x if every v in input.a { v }", paths(&[&["a"]])),
        ("x if every v in [1] { v < input.a }", paths(&[&["a"]])),
        (
            "y := 1\nx if { y with data.q as input.a }",
            paths(&[&["a"]]),
        ),
        // Comprehensions.
        ("x := [v | some v in input.a]", paths(&[&["a"]])),
        ("x := [input.a | true]", paths(&[&["a"]])),
        ("x := {v | some v in input.a}", paths(&[&["a"]])),
        ("x := {input.a | true}", paths(&[&["a"]])),
        ("x := {k: v | some k, v in input.a}", paths(&[&["a"]])),
        ("x := {input.a: 1 | true}", paths(&[&["a"]])),
        ("x := {1: input.a | true}", paths(&[&["a"]])),
        // Collections.
        ("x := [1, input.a]", paths(&[&["a"]])),
        ("x := {1, input.a}", paths(&[&["a"]])),
        ("x := {input.a: 1}", paths(&[&["a"]])),
        ("x := {1: input.a}", paths(&[&["a"]])),
        // Operators.
        ("x if input.a in [1]", paths(&[&["a"]])),
        ("x if 1 in input.a", paths(&[&["a"]])),
        ("x if input.a, 1 in [1]", paths(&[&["a"]])),
        ("x := input.a + 1", paths(&[&["a"]])),
        ("x := 1 - input.a", paths(&[&["a"]])),
        ("x := -input.a", paths(&[&["a"]])),
        ("x if input.a < 3", paths(&[&["a"]])),
        ("x if 3 != input.a", paths(&[&["a"]])),
        ("x := input.a | {1}", paths(&[&["a"]])),
        ("x := {1} & input.a", paths(&[&["a"]])),
        ("x if { y := input.a; y }", paths(&[&["a"]])),
        ("x if { [y] = input.a; y }", paths(&[&["a"]])),
        ("x if { input.a = [y]; y }", paths(&[&["a"]])),
        // Calls.
        ("x := count(input.a)", paths(&[&["a"]])),
        ("x := concat(\"\", [\"a\", input.a])", paths(&[&["a"]])),
    ]);
}

#[test]
fn the_decision_module_adds_nothing() {
    let alone = analyse_modules(&[("policy.rego", RBAC)]);
    let with_decision = analyse_modules(&[("policy.rego", RBAC), ("decision.rego", DECISION)]);
    assert_eq!(alone, with_decision);
    assert_eq!(
        analyse_modules(&[("decision.rego", DECISION)]).reads,
        paths(&[])
    );
}

#[test]
fn the_rbac_bench_policy() {
    let analysis = analyse_modules(&[("policy.rego", RBAC)]);
    assert_eq!(
        analysis.reads,
        paths(&[
            &["action", "name"],
            &["chain"],
            &["peer", "workload"],
            &["request", "method"],
            &["resource", "value"],
            &["service"],
        ])
    );
    assert_eq!(analysis.impure, None);
}

// === purity ===

#[test]
fn impure_builtins_are_named_with_their_location() {
    for (builtin, call) in [
        ("time.now_ns", "time.now_ns()"),
        ("rand.intn", "rand.intn(\"x\", 10)"),
        ("uuid.rfc4122", "uuid.rfc4122(\"x\")"),
        (
            "http.send",
            "http.send({\"method\": \"get\", \"url\": \"https://example.com\"})",
        ),
        ("net.lookup_ip_addr", "net.lookup_ip_addr(\"x\")"),
        (
            "net.cidr_contains",
            "net.cidr_contains(\"10.0.0.0/8\", \"10.0.0.1\")",
        ),
        ("opa.runtime", "opa.runtime()"),
        (
            "io.jwt.decode_verify",
            "io.jwt.decode_verify(\"x\", {\"secret\": \"s\"})",
        ),
        (
            "crypto.x509.parse_and_verify_certificates",
            "crypto.x509.parse_and_verify_certificates(\"x\")",
        ),
        ("print", "print(\"x\")"),
        ("trace", "trace(\"x\")"),
        ("json.match_schema", "json.match_schema({}, {})"),
    ] {
        let source =
            format!("package p\n\nimport rego.v1\n\nallow if {{\n\tx := {call}\n\tx\n}}\n");
        let analysis = analyse_modules(&[("impure.rego", &source)]);
        assert_eq!(
            analysis.impure,
            Some(Impurity {
                builtin: builtin.to_owned(),
                location: "impure.rego:6".to_owned(),
            }),
            "{call}"
        );
    }
}

/// Each case calls `time.now_ns` in exactly one position.
#[test]
fn calls_are_found_in_every_position() {
    for rules in [
        "x := time.now_ns()",
        "s contains time.now_ns() if true",
        "o[time.now_ns()] := 1",
        "default d := time.now_ns()",
        "f(x) := time.now_ns() if x",
        "f(x) := 1 if { x; time.now_ns() }",
        "r := 1 if false else := time.now_ns()",
        "r := 1 if false else := 2 if time.now_ns()",
        "x if not time.now_ns()",
        "x if { some v in [time.now_ns()]; v }",
        "x if every v in [1] { v < time.now_ns() }",
        "x := [t | t := time.now_ns()]",
        "x := {time.now_ns() | true}",
        "x := {1: time.now_ns() | true}",
        "x := {time.now_ns(): 1}",
        "x := count([time.now_ns()])",
        "x := time.now_ns() + 1",
        "x if 1 in [time.now_ns()]",
        "y := 1\nx if { y with data.q as time.now_ns() }",
        "x := input.a[time.now_ns()]",
    ] {
        let analysis = analyse_rules(rules);
        assert_eq!(
            analysis.impure.map(|impurity| impurity.builtin),
            Some("time.now_ns".to_owned()),
            "{rules}"
        );
    }
}

#[test]
fn the_first_impure_call_is_reported() {
    let analysis = analyse_rules("x if {\n\ta := opa.runtime()\n\tb := time.now_ns()\n\ta == b\n}");
    assert_eq!(
        analysis.impure,
        Some(Impurity {
            builtin: "opa.runtime".to_owned(),
            location: "test.rego:6".to_owned(),
        })
    );
}

#[test]
fn operators_and_pure_builtins_are_pure() {
    let analysis = analyse_rules(
        "allow if {\n\
         \tinput.a == 1\n\
         \tinput.b != 2\n\
         \tinput.c < 3\n\
         \tinput.d <= 4\n\
         \tinput.e > 5\n\
         \tinput.f >= 6\n\
         \tx := ((input.g + 1) * 2 - 3) / 4 % 5\n\
         \tx > 0\n\
         \ty := input.h | {1}\n\
         \tz := input.i & {2}\n\
         \tcount(y) > count(z)\n\
         \tinput.j in [1]\n\
         \tsome k, v in {1: 2}\n\
         \tk = v\n\
         \t-input.k < 0\n\
         \tstartswith(sprintf(\"%v\", [input.l]), \"1\")\n\
         \tregex.match(\"a+\", lower(input.m))\n\
         }",
    );
    assert_eq!(analysis.impure, None);
}

#[test]
fn user_functions_are_pure_when_their_bodies_are() {
    let pure = analyse_rules("f(x) := upper(x)\n\nallow if f(input.a) == \"A\"");
    assert_eq!(pure.impure, None);
    assert_eq!(pure.reads, paths(&[&["a"]]));

    let impure = analyse_rules("f(x) := time.now_ns() + x\n\nallow if f(1) > 0");
    assert_eq!(
        impure.impure.map(|impurity| impurity.builtin),
        Some("time.now_ns".to_owned())
    );

    let default = analyse_rules("default f(_) := 1\n\nf(x) := 2 if x\n\nallow if f(true) == 2");
    assert_eq!(default.impure, None);
}

#[test]
fn user_functions_resolve_across_modules() {
    let pure_lib = "package lib\n\nimport rego.v1\n\nf(x) := lower(x)\n";
    let impure_lib = "package lib\n\nimport rego.v1\n\nf(x) := time.now_ns()\n";
    for caller in [
        "allow if data.lib.f(input.a) == \"a\"",
        "import data.lib\n\nallow if lib.f(input.a) == \"a\"",
        "import data.lib as l\n\nallow if l.f(input.a) == \"a\"",
    ] {
        let main = format!("package main\n\nimport rego.v1\n\n{caller}\n");
        let pure = analyse_modules(&[("lib.rego", pure_lib), ("main.rego", &main)]);
        assert_eq!(pure.impure, None, "{caller}");
        assert_eq!(pure.reads, paths(&[&["a"]]), "{caller}");

        let impure = analyse_modules(&[("lib.rego", impure_lib), ("main.rego", &main)]);
        assert_eq!(
            impure.impure.map(|impurity| impurity.builtin),
            Some("time.now_ns".to_owned()),
            "{caller}"
        );
    }
}

#[test]
fn a_package_named_like_a_builtin_does_not_hide_it() {
    // Without an import, regorus resolves `time.now_ns` to the builtin, not to
    // `data.time.now_ns`; through `data.` it is the user function.
    let time = "package time\n\nimport rego.v1\n\nnow_ns(x) := x\n";
    let builtin = analyse_modules(&[
        ("time.rego", time),
        (
            "main.rego",
            "package main\n\nimport rego.v1\n\nx := time.now_ns()\n",
        ),
    ]);
    assert_eq!(
        builtin.impure.map(|impurity| impurity.builtin),
        Some("time.now_ns".to_owned())
    );
    // Through an import regorus would call the user function; the analysis still assumes
    // the builtin.
    let imported = analyse_modules(&[
        ("time.rego", time),
        (
            "main.rego",
            "package main\n\nimport rego.v1\n\nimport data.time\n\nx := time.now_ns(1)\n",
        ),
    ]);
    assert_eq!(
        imported.impure.map(|impurity| impurity.builtin),
        Some("time.now_ns".to_owned())
    );
    let user = analyse_modules(&[
        ("time.rego", time),
        (
            "main.rego",
            "package main\n\nimport rego.v1\n\nx := data.time.now_ns(1)\n",
        ),
    ]);
    assert_eq!(user.impure, None);
}

#[test]
fn unresolved_calls_are_impure() {
    let other = "package a.b\n\nimport rego.v1\n\nf(x) := x\n";
    for (caller, name) in [
        // An extension would be looked up by this name; the analysis cannot see it.
        ("x := custom.ext(1)", "custom.ext"),
        // Not imported: regorus looks for `data.main.b.f`.
        ("x := b.f(1)", "b.f"),
        // A rule that is not a function.
        ("y := 1\nx := y(1)", "y"),
    ] {
        let main = format!("package main\n\nimport rego.v1\n\n{caller}\n");
        let analysis = analyse_modules(&[("other.rego", other), ("main.rego", &main)]);
        assert_eq!(
            analysis.impure.map(|impurity| impurity.builtin),
            Some(name.to_owned()),
            "{caller}"
        );
    }
}

#[test]
fn with_replacing_a_function_by_a_builtin_is_a_call() {
    let impure = analyse_rules("x if { count([1]) == 1 with count as time.now_ns }");
    assert_eq!(
        impure.impure.map(|impurity| impurity.builtin),
        Some("time.now_ns".to_owned())
    );
    let pure = analyse_rules("f(_) := 1\n\nx if { count([1]) == 1 with count as f }");
    assert_eq!(pure.impure, None);
    let value = analyse_rules("x if { time.now_ns() == 1 with time.now_ns as 1 }");
    assert!(
        value.impure.is_some(),
        "a replaced impure call still counts"
    );
}

// === the pure list ===

/// Prefixes and names that must never be on the pure list.
const FORBIDDEN_PREFIXES: &[&str] = &[
    "time.",
    "rand.",
    "uuid.",
    "http.",
    "net.",
    "opa.",
    "io.jwt.",
    "crypto.x509.",
    "providers.",
    "azure.",
    "test.",
];
const FORBIDDEN_NAMES: &[&str] = &[
    "trace",
    "print",
    "opa.runtime",
    "json.match_schema",
    "json.verify_schema",
];

#[test]
fn every_pure_builtin_is_a_regorus_builtin() {
    for name in PURE_BUILTINS {
        assert!(
            BUILTINS.contains_key(name),
            "{name} is not a regorus builtin"
        );
    }
    let unique: BTreeSet<&str> = PURE_BUILTINS.iter().copied().collect();
    assert_eq!(unique.len(), PURE_BUILTINS.len(), "duplicate names");
}

#[test]
fn no_forbidden_builtin_is_pure() {
    for name in PURE_BUILTINS {
        assert!(
            !FORBIDDEN_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix)),
            "{name}"
        );
        assert!(!FORBIDDEN_NAMES.contains(name), "{name}");
    }
}

/// A regorus upgrade that adds a builtin fails here until someone decides whether it is
/// pure.
#[test]
fn every_registry_builtin_is_classified() {
    let mut unclassified: Vec<&str> = BUILTINS
        .keys()
        .copied()
        .filter(|name| !PURE_BUILTINS.contains(name))
        .filter(|name| {
            !FORBIDDEN_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
        })
        .filter(|name| !FORBIDDEN_NAMES.contains(name))
        .collect();
    unclassified.sort_unstable();
    assert_eq!(unclassified, Vec::<&str>::new());
}
