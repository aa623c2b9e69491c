//! The builtins a cacheable policy may call.

use regorus::unstable::BUILTINS;

/// The builtins that are deterministic functions of their arguments in regorus 0.14.1, by
/// the name regorus registers them under (`regorus::unstable::BUILTINS`). A call to any other
/// builtin makes a policy impure.
///
/// Left out on purpose, although some are deterministic: every `time.*` (the clock, the local
/// time zone), `rand.*`, `uuid.*`, `http.send`, every `net.*` (DNS), `opa.runtime` (the
/// environment), `trace` and `print` (side effects). `json.match_schema` and
/// `json.verify_schema` are left out too: the `jsonschema` crate behind them can fetch a
/// schema's remote `$ref` when its resolver features are on, and feature unification could
/// turn them on without a change here. regorus 0.14.1 has no `crypto.*` or `io.jwt.*`
/// builtins, so those names are not here either; calling one is impure like any unknown name.
///
/// Operators (`==`, `+`, `|`, `&`, `in`, `:=`, ...) are AST nodes in regorus, not calls, and
/// need no entry; regorus does not register OPA's call forms of them (`plus`, `eq`, ...).
pub(crate) const PURE_BUILTINS: &[&str] = &[
    // Aggregates.
    "count",
    "max",
    "min",
    "product",
    "sort",
    "sum",
    // Arrays.
    "array.concat",
    "array.reverse",
    "array.slice",
    // Sets (`__builtin_sets.*` back the `|` and `&` operators in regorus's compiler).
    "__builtin_sets.intersection",
    "__builtin_sets.union",
    "intersection",
    "union",
    // Objects.
    "json.filter",
    "json.patch",
    "json.remove",
    "object.filter",
    "object.get",
    "object.keys",
    "object.remove",
    "object.subset",
    "object.union",
    "object.union_n",
    // Strings.
    "concat",
    "contains",
    "endswith",
    "format_int",
    "indexof",
    "indexof_n",
    "lower",
    "replace",
    "split",
    "sprintf",
    "startswith",
    "strings.any_prefix_match",
    "strings.any_suffix_match",
    "strings.count",
    "strings.replace_n",
    "strings.reverse",
    "substring",
    "trim",
    "trim_left",
    "trim_prefix",
    "trim_right",
    "trim_space",
    "trim_suffix",
    "upper",
    // Regular expressions and globs.
    "glob.match",
    "glob.quote_meta",
    "regex.find_all_string_submatch_n",
    "regex.find_n",
    "regex.is_valid",
    "regex.match",
    "regex.replace",
    "regex.split",
    "regex.template_match",
    // Graphs.
    "graph.reachable",
    "graph.reachable_paths",
    "walk",
    // Numbers and bits.
    "abs",
    "bits.and",
    "bits.lsh",
    "bits.negate",
    "bits.or",
    "bits.rsh",
    "bits.xor",
    "ceil",
    "floor",
    "numbers.range",
    "numbers.range_step",
    "round",
    "to_number",
    // Types.
    "is_array",
    "is_boolean",
    "is_null",
    "is_number",
    "is_object",
    "is_set",
    "is_string",
    "type_name",
    // Encodings.
    "base64.decode",
    "base64.encode",
    "base64.is_valid",
    "base64url.decode",
    "base64url.encode",
    "base64url.encode_no_pad",
    "hex.decode",
    "hex.encode",
    "json.is_valid",
    "json.marshal",
    "json.marshal_with_options",
    "json.unmarshal",
    "urlquery.decode",
    "urlquery.decode_object",
    "urlquery.encode",
    "urlquery.encode_object",
    "yaml.is_valid",
    "yaml.marshal",
    "yaml.unmarshal",
    // Versions and units.
    "semver.compare",
    "semver.is_valid",
    "units.parse",
    "units.parse_bytes",
];

/// A builtin (or `print`, which regorus handles outside its registry) that is not on
/// [`PURE_BUILTINS`].
pub(super) fn is_impure_builtin(name: &str) -> bool {
    !PURE_BUILTINS.contains(&name) && (name == "print" || BUILTINS.contains_key(name))
}
