//! JSON pointers (RFC 6901) to edit test documents, and a JSON Patch (RFC 6902) applier that is as
//! strict as the tests need: `add` and `replace` on object members, which is all the webhook
//! emits and what kube-apiserver accepts for such paths.

use serde_json::{Value, json};

/// `token` as a JSON-pointer token (`~` and `/` escaped).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(pointer: &str) -> Vec<String> {
    assert!(
        pointer.starts_with('/'),
        "'{pointer}' is not a JSON pointer"
    );
    pointer.split('/').skip(1).map(unescape).collect()
}

fn child<'a>(node: &'a mut Value, token: &str, create: bool) -> &'a mut Value {
    match node {
        Value::Object(map) => {
            if create {
                map.entry(token.to_string()).or_insert_with(|| json!({}))
            } else {
                map.get_mut(token)
                    .unwrap_or_else(|| panic!("no member '{token}'"))
            }
        }
        Value::Array(items) => {
            let index: usize = token
                .parse()
                .unwrap_or_else(|_| panic!("'{token}' is not an index"));
            &mut items[index]
        }
        other => panic!("cannot descend into {other} with '{token}'"),
    }
}

/// Set the member at `pointer`, creating missing intermediate objects (`-` appends to an array).
pub fn set(doc: &mut Value, pointer: &str, value: Value) {
    let tokens = tokens(pointer);
    let (last, parents) = tokens.split_last().expect("not the root");
    let mut node = doc;
    for token in parents {
        node = child(node, token, true);
    }
    match node {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) if last == "-" => items.push(value),
        Value::Array(items) => items[last.parse::<usize>().expect("index")] = value,
        other => panic!("cannot set '{last}' in {other}"),
    }
}

/// Remove the member at `pointer` if present.
pub fn remove(doc: &mut Value, pointer: &str) {
    let tokens = tokens(pointer);
    let (last, parents) = tokens.split_last().expect("not the root");
    let mut node = doc;
    for token in parents {
        node = child(node, token, false);
    }
    if let Value::Object(map) = node {
        map.remove(last);
    }
}

/// Apply one RFC 6902 op to `doc`, or say why it does not apply. Only `add` and `replace` on an
/// object member are accepted (every parent must exist and be an object, `replace` needs the
/// member, the op needs a `value`): anything else is an error, so a patch kube-apiserver would
/// refuse fails the test.
pub fn try_apply_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let kind = op["op"].as_str().ok_or("no op")?;
    let path = op["path"].as_str().ok_or("no path")?;
    let value = op.get("value").ok_or("no value")?.clone();
    let tokens: Vec<String> = path
        .strip_prefix('/')
        .ok_or("path does not start with /")?
        .split('/')
        .map(unescape)
        .collect();
    let (last, parents) = tokens.split_last().ok_or("empty path")?;
    let mut at = doc;
    for token in parents {
        at = at
            .as_object_mut()
            .and_then(|m| m.get_mut(token))
            .ok_or_else(|| format!("parent {token} missing"))?;
    }
    let map = at.as_object_mut().ok_or("parent is not an object")?;
    match kind {
        "add" => {
            map.insert(last.clone(), value);
        }
        "replace" => {
            let slot = map
                .get_mut(last)
                .ok_or_else(|| format!("replace of missing member {last}"))?;
            *slot = value;
        }
        other => return Err(format!("unexpected op {other}")),
    }
    Ok(())
}

/// Apply `ops` in order with [`try_apply_op`]; panics on the first op that does not apply.
#[track_caller]
pub fn apply_patch(doc: &mut Value, ops: &[Value]) {
    for op in ops {
        try_apply_op(doc, op).unwrap_or_else(|e| panic!("patch op {op} does not apply: {e}"));
    }
}
