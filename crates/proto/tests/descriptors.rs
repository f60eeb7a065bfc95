//! Proves the compiled protobuf descriptors agree with the contract's field tables
//! (`proto/contract/fields-v{1,2,3}.json`, copied from the shared contract), which are the source of truth:
//!
//! * each `emqx.exhook.vN` file has exactly the table's messages, fields (name, number, type,
//!   label, oneof), nested enums, reserved numbers/names and `HookProvider` RPCs;
//! * the gateway's `exhook.gateway.model` is a wire superset of all three packages, with the
//!   single documented exception of v1's string `BrokerInfo.uptime`;
//! * the checker itself notices a mutated table.
//!
//! The tables are found in `$EXHOOK_CONTRACT_DIR`, else in `../../proto/contract` relative to
//! this crate. A missing table fails the tests: they are never skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::PathBuf;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};
use serde_json::Value;

const MODEL_PACKAGE: &str = "exhook.gateway.model";

// ---------------------------------------------------------------------------------------------
// A package in the tables' vocabulary; both the tables and the descriptors are turned into it.
// ---------------------------------------------------------------------------------------------

/// One field, rendered like a table row (its name is the key of the map holding it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    number: i32,
    /// `string`, `ClientInfo`, `ValuedResponse.ResponsedType`, `map<string,string>`, ...
    ty: String,
    /// `singular`, `repeated`, `map` or `oneof`.
    label: String,
    /// The oneof's name, for `label == "oneof"`.
    oneof: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reserved {
    numbers: BTreeSet<i32>,
    names: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rpc {
    input: String,
    output: String,
    client_streaming: bool,
    server_streaming: bool,
}

#[derive(Debug, Default)]
struct Package {
    /// Message name -> field name -> field.
    messages: BTreeMap<String, BTreeMap<String, Field>>,
    /// `Outer.Inner` -> value name -> number.
    enums: BTreeMap<String, BTreeMap<String, i32>>,
    /// Message name -> reserved numbers and names (messages without any are absent).
    reserved: BTreeMap<String, Reserved>,
    /// Fully-qualified service name -> RPC name -> RPC.
    services: BTreeMap<String, BTreeMap<String, Rpc>>,
}

// ---------------------------------------------------------------------------------------------
// Loading the tables and the descriptor set.
// ---------------------------------------------------------------------------------------------

fn contract_dir() -> PathBuf {
    let dir = match std::env::var_os("EXHOOK_CONTRACT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto/contract")),
    };
    assert!(
        dir.is_dir(),
        "the contract's field tables are missing: {} is not a directory. They are the source of \
         truth for these tests, which are never skipped; set EXHOOK_CONTRACT_DIR to the directory \
         holding fields-v1.json, fields-v2.json and fields-v3.json.",
        dir.display()
    );
    dir
}

fn load_table(version: &str) -> Value {
    let path = contract_dir().join(format!("fields-{version}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read field table {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("field table {} is not valid JSON: {e}", path.display()))
}

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(exhook_proto::FILE_DESCRIPTOR_SET)
        .expect("exhook_proto::FILE_DESCRIPTOR_SET is not an encoded FileDescriptorSet")
}

/// The one file of `fds` declaring `package`, or a problem if there is none or several.
fn file_for_package<'a>(fds: &'a FileDescriptorSet, package: &str) -> Result<&'a FileDescriptorProto, String> {
    let files: Vec<_> = fds.file.iter().filter(|f| f.package() == package).collect();
    match files.as_slice() {
        [file] => Ok(file),
        [] => Err(format!(
            "no file in the descriptor set has package {package} (files: {:?})",
            fds.file.iter().map(|f| f.name()).collect::<Vec<_>>()
        )),
        many => Err(format!(
            "{} files have package {package}: {:?}",
            many.len(),
            many.iter().map(|f| f.name()).collect::<Vec<_>>()
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Table (serde_json::Value) -> Package.
// ---------------------------------------------------------------------------------------------

fn object<'a>(value: &'a Value, context: &str) -> &'a serde_json::Map<String, Value> {
    value.as_object().unwrap_or_else(|| panic!("table: {context} should be a JSON object, got {value}"))
}

fn array<'a>(value: &'a Value, context: &str) -> &'a Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("table: {context} should be a JSON array, got {value}"))
}

fn string<'a>(value: &'a Value, context: &str) -> &'a str {
    value.as_str().unwrap_or_else(|| panic!("table: {context} should be a string, got {value}"))
}

fn number(value: &Value, context: &str) -> i32 {
    value
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or_else(|| panic!("table: {context} should be a 32-bit integer, got {value}"))
}

fn member<'a>(value: &'a Value, key: &str, context: &str) -> &'a Value {
    value.get(key).unwrap_or_else(|| panic!("table: {context} has no key {key:?}"))
}

/// A table field row `{name, number, type, label, oneof}` as `(name, Field)`.
fn table_field(row: &Value, context: &str) -> (String, Field) {
    let name = string(member(row, "name", context), &format!("{context}.name"));
    let context = format!("{context} ({name})");
    let oneof = match row.get("oneof") {
        None | Some(Value::Null) => None,
        Some(v) => Some(string(v, &format!("{context}.oneof")).to_string()),
    };
    let field = Field {
        number: number(member(row, "number", &context), &format!("{context}.number")),
        ty: string(member(row, "type", &context), &format!("{context}.type")).to_string(),
        label: string(member(row, "label", &context), &format!("{context}.label")).to_string(),
        oneof,
    };
    (name.to_string(), field)
}

/// The fields of one table message (a JSON array of rows), keyed by name.
fn table_fields(rows: &Value, message: &str) -> BTreeMap<String, Field> {
    let mut fields = BTreeMap::new();
    for (i, row) in array(rows, &format!("messages.{message}")).iter().enumerate() {
        let (name, field) = table_field(row, &format!("messages.{message}[{i}]"));
        let previous = fields.insert(name.clone(), field);
        assert!(previous.is_none(), "table: messages.{message} lists field {name} twice");
    }
    fields
}

fn package_from_table(table: &Value) -> Package {
    let mut package = Package::default();

    for (message, rows) in object(member(table, "messages", "the table"), "messages") {
        package.messages.insert(message.clone(), table_fields(rows, message));
    }

    for (name, values) in object(member(table, "enums", "the table"), "enums") {
        let values = object(values, &format!("enums.{name}"))
            .iter()
            .map(|(value, n)| (value.clone(), number(n, &format!("enums.{name}.{value}"))))
            .collect();
        package.enums.insert(name.clone(), values);
    }

    if let Some(reserved) = table.get("reserved") {
        for (message, r) in object(reserved, "reserved") {
            let context = format!("reserved.{message}");
            let numbers = match r.get("numbers") {
                None => BTreeSet::new(),
                Some(v) => array(v, &format!("{context}.numbers"))
                    .iter()
                    .map(|n| number(n, &format!("{context}.numbers")))
                    .collect(),
            };
            let names = match r.get("names") {
                None => BTreeSet::new(),
                Some(v) => array(v, &format!("{context}.names"))
                    .iter()
                    .map(|n| string(n, &format!("{context}.names")).to_string())
                    .collect(),
            };
            package.reserved.insert(message.clone(), Reserved { numbers, names });
        }
    }

    for (service, rpcs) in object(member(table, "services", "the table"), "services") {
        let mut out = BTreeMap::new();
        for (rpc, types) in object(rpcs, &format!("services.{service}")) {
            let context = format!("services.{service}.{rpc}");
            let [input, output] = array(types, &context).as_slice() else {
                panic!("table: {context} should be [RequestType, ResponseType], got {types}");
            };
            out.insert(
                rpc.clone(),
                Rpc {
                    input: string(input, &context).to_string(),
                    output: string(output, &context).to_string(),
                    client_streaming: false,
                    server_streaming: false,
                },
            );
        }
        package.services.insert(service.clone(), out);
    }

    package
}

// ---------------------------------------------------------------------------------------------
// Descriptor -> Package. Anything the tables cannot express is reported as a problem.
// ---------------------------------------------------------------------------------------------

/// `.emqx.exhook.v3.ValuedResponse.ResponsedType` -> `ValuedResponse.ResponsedType`; a name
/// outside the package is kept whole, so it shows up as a mismatch.
fn strip_package(type_name: &str, prefix: &str) -> String {
    type_name.strip_prefix(prefix).unwrap_or(type_name).to_string()
}

/// The table spelling of a field's type, ignoring map-ness and label.
fn render_type(field: &FieldDescriptorProto, prefix: &str) -> String {
    match field.r#type() {
        Type::Message | Type::Enum | Type::Group => strip_package(field.type_name(), prefix),
        // TYPE_STRING -> string, TYPE_UINT32 -> uint32, ...
        scalar => scalar.as_str_name().trim_start_matches("TYPE_").to_ascii_lowercase(),
    }
}

/// The synthetic `...Entry` nested message backing map field `field` of `message`, if any.
fn map_entry<'a>(
    message: &'a DescriptorProto,
    message_path: &str,
    field: &FieldDescriptorProto,
    prefix: &str,
) -> Option<&'a DescriptorProto> {
    if field.label() != Label::Repeated || field.r#type() != Type::Message {
        return None;
    }
    message
        .nested_type
        .iter()
        .find(|nested| is_map_entry(nested) && field.type_name() == format!("{prefix}{message_path}.{}", nested.name()))
}

fn is_map_entry(message: &DescriptorProto) -> bool {
    message.options.as_ref().is_some_and(|o| o.map_entry())
}

fn descriptor_field(
    message: &DescriptorProto,
    message_path: &str,
    field: &FieldDescriptorProto,
    prefix: &str,
    problems: &mut Vec<String>,
) -> Field {
    let context = format!("{message_path}.{}", field.name());
    if field.proto3_optional() {
        problems.push(format!("{context}: proto3_optional is set (the tables have no `optional` fields)"));
    }

    if let Some(entry) = map_entry(message, message_path, field, prefix) {
        let part = |number: i32, what: &str, problems: &mut Vec<String>| match entry
            .field
            .iter()
            .find(|f| f.number() == number)
        {
            Some(f) => render_type(f, prefix),
            None => {
                problems.push(format!("{context}: map entry {} has no {what}", entry.name()));
                "?".to_string()
            }
        };
        let key = part(1, "key (field 1)", problems);
        let value = part(2, "value (field 2)", problems);
        return Field {
            number: field.number(),
            ty: format!("map<{key},{value}>"),
            label: "map".to_string(),
            oneof: None,
        };
    }

    let (label, oneof) = match (field.label(), field.oneof_index) {
        (Label::Repeated, _) => ("repeated", None),
        (_, Some(index)) => {
            let name =
                usize::try_from(index).ok().and_then(|i| message.oneof_decl.get(i)).map(|o| o.name().to_string());
            if name.is_none() {
                problems.push(format!("{context}: oneof_index {index} has no oneof declaration"));
            }
            ("oneof", name)
        }
        (Label::Required, None) => {
            problems.push(format!("{context}: LABEL_REQUIRED in a proto3 file"));
            ("required", None)
        }
        (Label::Optional, None) => ("singular", None),
    };
    Field { number: field.number(), ty: render_type(field, prefix), label: label.to_string(), oneof }
}

/// Adds `message` (at `path`, e.g. `ValuedResponse`), its enums and its non-map nested messages.
fn collect_message(
    message: &DescriptorProto,
    path: &str,
    prefix: &str,
    package: &mut Package,
    problems: &mut Vec<String>,
) {
    let fields = message
        .field
        .iter()
        .map(|f| {
            let field = descriptor_field(message, path, f, prefix, problems);
            (f.name().to_string(), field)
        })
        .collect();
    package.messages.insert(path.to_string(), fields);

    let mut reserved = Reserved::default();
    for range in &message.reserved_range {
        // Descriptor ranges are [start, end).
        reserved.numbers.extend(range.start()..range.end());
    }
    reserved.names.extend(message.reserved_name.iter().cloned());
    if reserved != Reserved::default() {
        package.reserved.insert(path.to_string(), reserved);
    }

    for e in &message.enum_type {
        package.enums.insert(format!("{path}.{}", e.name()), enum_values(e));
    }
    for nested in message.nested_type.iter().filter(|n| !is_map_entry(n)) {
        // The tables have no nested messages: this one will show up as an extra message.
        collect_message(nested, &format!("{path}.{}", nested.name()), prefix, package, problems);
    }
}

fn enum_values(e: &prost_types::EnumDescriptorProto) -> BTreeMap<String, i32> {
    e.value.iter().map(|v| (v.name().to_string(), v.number())).collect()
}

fn package_from_file(file: &FileDescriptorProto, problems: &mut Vec<String>) -> Package {
    let pkg = file.package();
    let prefix = format!(".{pkg}.");
    let mut package = Package::default();
    for message in &file.message_type {
        collect_message(message, message.name(), &prefix, &mut package, problems);
    }
    for e in &file.enum_type {
        // The tables only have nested enums: this one will show up as an extra enum.
        package.enums.insert(e.name().to_string(), enum_values(e));
    }
    for service in &file.service {
        let rpcs = service
            .method
            .iter()
            .map(|m| {
                let rpc = Rpc {
                    input: strip_package(m.input_type(), &prefix),
                    output: strip_package(m.output_type(), &prefix),
                    client_streaming: m.client_streaming(),
                    server_streaming: m.server_streaming(),
                };
                (m.name().to_string(), rpc)
            })
            .collect();
        package.services.insert(format!("{pkg}.{}", service.name()), rpcs);
    }
    package
}

// ---------------------------------------------------------------------------------------------
// Comparison.
// ---------------------------------------------------------------------------------------------

/// Reports keys present on one side only (as `{what}{key}`); returns the keys present on both.
fn diff_keys<'a, V>(
    what: &str,
    table: &'a BTreeMap<String, V>,
    proto: &BTreeMap<String, V>,
    problems: &mut Vec<String>,
) -> Vec<&'a String> {
    for key in proto.keys().filter(|k| !table.contains_key(*k)) {
        problems.push(format!("{what}{key}: in the proto, not in the table"));
    }
    let mut common = Vec::new();
    for key in table.keys() {
        if proto.contains_key(key) {
            common.push(key);
        } else {
            problems.push(format!("{what}{key}: in the table, missing from the proto"));
        }
    }
    common
}

/// `attribute: <expected_side> X, <actual_side> Y` for every attribute that differs.
fn field_diffs(expected: &Field, actual: &Field, expected_side: &str, actual_side: &str) -> Vec<String> {
    fn diff<T: Debug + PartialEq>(out: &mut Vec<String>, attribute: &str, a: &T, b: &T, sides: (&str, &str)) {
        if a != b {
            out.push(format!("{attribute}: {} {a:?}, {} {b:?}", sides.0, sides.1));
        }
    }
    let sides = (expected_side, actual_side);
    let mut out = Vec::new();
    diff(&mut out, "number", &expected.number, &actual.number, sides);
    diff(&mut out, "type", &expected.ty, &actual.ty, sides);
    diff(&mut out, "label", &expected.label, &actual.label, sides);
    diff(&mut out, "oneof", &expected.oneof, &actual.oneof, sides);
    out
}

fn compare_packages(table: &Package, proto: &Package, problems: &mut Vec<String>) {
    for message in diff_keys("message ", &table.messages, &proto.messages, problems) {
        let (t, p) = (&table.messages[message], &proto.messages[message]);
        for field in diff_keys(&format!("field {message}."), t, p, problems) {
            for d in field_diffs(&t[field], &p[field], "table", "proto") {
                problems.push(format!("field {message}.{field}: {d}"));
            }
        }
    }

    for e in diff_keys("enum ", &table.enums, &proto.enums, problems) {
        let (t, p) = (&table.enums[e], &proto.enums[e]);
        for value in diff_keys(&format!("enum value {e}."), t, p, problems) {
            if t[value] != p[value] {
                problems.push(format!("enum value {e}.{value}: table {}, proto {}", t[value], p[value]));
            }
        }
    }

    let with_reserved: BTreeSet<&String> = table.reserved.keys().chain(proto.reserved.keys()).collect();
    let none = Reserved::default();
    for message in with_reserved {
        let t = table.reserved.get(message).unwrap_or(&none);
        let p = proto.reserved.get(message).unwrap_or(&none);
        if t.numbers != p.numbers {
            problems.push(format!("reserved numbers of {message}: table {:?}, proto {:?}", t.numbers, p.numbers));
        }
        if t.names != p.names {
            problems.push(format!("reserved names of {message}: table {:?}, proto {:?}", t.names, p.names));
        }
    }

    for service in diff_keys("service ", &table.services, &proto.services, problems) {
        let (t, p) = (&table.services[service], &proto.services[service]);
        for rpc in diff_keys(&format!("rpc {service}/"), t, p, problems) {
            if t[rpc] != p[rpc] {
                problems.push(format!("rpc {service}/{rpc}: table {:?}, proto {:?}", t[rpc], p[rpc]));
            }
        }
    }
}

/// Every mismatch between the table and the descriptor file of the table's package.
fn compare_with_table(table: &Value, fds: &FileDescriptorSet) -> Vec<String> {
    let package_name = string(member(table, "package", "the table"), "package");
    let file = match file_for_package(fds, package_name) {
        Ok(file) => file,
        Err(problem) => return vec![problem],
    };

    let mut problems = Vec::new();
    if let Some(syntax) = table.get("proto_syntax") {
        let syntax = string(syntax, "proto_syntax");
        if file.syntax() != syntax {
            problems.push(format!("{}: syntax {:?}, the table says {syntax:?}", file.name(), file.syntax()));
        }
    }

    let hook_providers = file.service.iter().filter(|s| s.name() == "HookProvider").count();
    if file.service.len() != 1 || hook_providers != 1 {
        problems.push(format!(
            "{}: expected exactly one service, HookProvider; found {:?}",
            file.name(),
            file.service.iter().map(|s| s.name()).collect::<Vec<_>>()
        ));
    }

    let proto = package_from_file(file, &mut problems);
    compare_packages(&package_from_table(table), &proto, &mut problems);
    problems
}

fn assert_matches_table(version: &str) {
    let table = load_table(version);
    let problems = compare_with_table(&table, &descriptor_set());
    assert!(
        problems.is_empty(),
        "{} mismatch(es) between the compiled proto of {version} and fields-{version}.json:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn v1_descriptor_matches_field_table() {
    assert_matches_table("v1");
}

#[test]
fn v2_descriptor_matches_field_table() {
    assert_matches_table("v2");
}

#[test]
fn v3_descriptor_matches_field_table() {
    assert_matches_table("v3");
}

// ---------------------------------------------------------------------------------------------
// The model is a wire superset of every package.
// ---------------------------------------------------------------------------------------------

/// The model's name for a v1 message or enum (other names are unchanged).
fn model_name(name: &str) -> String {
    match name {
        "ClientCheckAclRequest" => "ClientAuthorizeRequest",
        "SessionTakeoveredRequest" => "SessionTakenoverRequest",
        "ClientCheckAclRequest.AclReqType" => "ClientAuthorizeRequest.AuthorizeReqType",
        other => other,
    }
    .to_string()
}

fn model_package(fds: &FileDescriptorSet) -> Package {
    let file = file_for_package(fds, MODEL_PACKAGE).unwrap_or_else(|problem| panic!("{problem}"));
    let mut problems = Vec::new();
    let model = package_from_file(file, &mut problems);
    assert!(
        problems.is_empty(),
        "{} is not expressible in the tables' vocabulary:\n  {}",
        file.name(),
        problems.join("\n  ")
    );
    model
}

/// Is this the one allowed wire conflict: v1 `BrokerInfo.uptime` is a string, the model's int64?
fn is_uptime_exception(version: &str, message: &str, name: &str, table: &Field, model: &Field) -> bool {
    version == "v1"
        && message == "BrokerInfo"
        && name == "uptime"
        && table.ty == "string"
        && *model == Field { ty: "int64".to_string(), ..table.clone() }
}

/// Checks that the model has field `name` = `field` of `message` (model names), same number,
/// name, label and type; returns whether it was the uptime exception.
fn check_model_field(
    version: &str,
    message: &str,
    name: &str,
    field: &Field,
    model: &Package,
    problems: &mut Vec<String>,
) -> bool {
    let context = format!("{version} {message}.{name} = {}", field.number);
    let Some(model_fields) = model.messages.get(message) else {
        problems.push(format!("{context}: the model has no message {message}"));
        return false;
    };
    let Some((model_field_name, model_field)) = model_fields.iter().find(|(_, f)| f.number == field.number) else {
        problems.push(format!("{context}: the model's {message} has no field {}", field.number));
        return false;
    };
    if model_field_name == name && is_uptime_exception(version, message, name, field, model_field) {
        return true;
    }
    if model_field_name != name {
        problems.push(format!("{context}: the model names field {} {model_field_name:?}", field.number));
    }
    for d in field_diffs(field, model_field, version, "model") {
        problems.push(format!("{context}: {d}"));
    }
    false
}

#[test]
fn model_is_wire_superset_of_every_package() {
    let model = model_package(&descriptor_set());
    let mut problems = Vec::new();
    let mut uptime_exception_seen = false;

    for version in ["v1", "v2", "v3"] {
        let table = load_table(version);
        let package = package_from_table(&table);

        for (message, fields) in &package.messages {
            let message = model_name(message);
            for (name, field) in fields {
                let field = Field { ty: model_name(&field.ty), ..field.clone() };
                uptime_exception_seen |= check_model_field(version, &message, name, &field, &model, &mut problems);
            }
        }

        for (e, values) in &package.enums {
            let e = model_name(e);
            let Some(model_values) = model.enums.get(&e) else {
                problems.push(format!("{version} enum {e}: not in the model"));
                continue;
            };
            for (value, number) in values {
                if model_values.get(value) != Some(number) {
                    problems.push(format!(
                        "{version} enum value {e}.{value} = {number}: the model has {:?}",
                        model_values.get(value)
                    ));
                }
            }
        }
    }

    // EMQX 5.0–5.3 speak v2 with TopicFilter.qos = 2 and SubOpts.share = 2 (reserved since).
    let v2 = load_table("v2");
    let variant = "v5.0.0-v5.3.x";
    let add_fields = member(
        member(member(&v2, "variants", "fields-v2.json"), variant, "variants"),
        "add_fields",
        &format!("variants.{variant}"),
    );
    let mut added = 0;
    for (message, rows) in object(add_fields, &format!("variants.{variant}.add_fields")) {
        for (i, row) in array(rows, &format!("add_fields.{message}")).iter().enumerate() {
            let (name, field) = table_field(row, &format!("add_fields.{message}[{i}]"));
            let message = model_name(message);
            check_model_field(&format!("v2 ({variant})"), &message, &name, &field, &model, &mut problems);
            added += 1;
        }
    }
    assert!(added > 0, "fields-v2.json: variants.{variant}.add_fields is empty");

    assert!(
        problems.is_empty(),
        "{} way(s) the model ({MODEL_PACKAGE}) is not a wire superset of the tables:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
    assert!(
        uptime_exception_seen,
        "the documented exception (v1 BrokerInfo.uptime is a string, the model's an int64) no \
         longer exists: remove it from this test, lib.rs and the hand conversion in exhook-hooks"
    );
}

// ---------------------------------------------------------------------------------------------
// The checker can fail.
// ---------------------------------------------------------------------------------------------

#[test]
fn checker_reports_a_mutated_field_number() {
    let mut table = load_table("v3");
    let rows = table
        .pointer_mut("/messages/ClientInfo")
        .and_then(Value::as_array_mut)
        .expect("fields-v3.json has no messages.ClientInfo array");
    let peerport = rows
        .iter_mut()
        .find(|row| row.get("name").and_then(Value::as_str) == Some("peerport"))
        .expect("fields-v3.json: ClientInfo has no field peerport");
    let old =
        peerport.get("number").and_then(Value::as_i64).expect("fields-v3.json: ClientInfo.peerport has no number");
    peerport["number"] = Value::from(old + 1);

    let problems = compare_with_table(&table, &descriptor_set());
    assert!(
        problems.iter().any(|p| p.contains("ClientInfo") && p.contains("peerport")),
        "renumbering ClientInfo.peerport {old} -> {} in the v3 table went unnoticed; problems: \
         {problems:#?}",
        old + 1
    );
}
