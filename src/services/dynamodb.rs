//! The DynamoDB stand-in: the JSON protocol (`X-Amz-Target:
//! DynamoDB_20120810.<Operation>`) for `PutItem`, `GetItem`, `DeleteItem`,
//! `Scan`, `ListTables` and `DescribeTable`, unsigned, over tables the config
//! declares (each with a partition key). Items keep the attribute-value JSON
//! the client sent (`{"S": "..."}`, `{"N": "..."}`, ...).
//!
//! Storage: `DATA/dynamodb/<table>.key` names the key attribute;
//! `DATA/dynamodb/<table>.json` holds the items, rewritten under an exclusive
//! lock (`flock`) so that two doors may share it.

use super::http::{Reply, body, header};
use super::{Options, authorize, context};
use serde_json::{Map, Value, json};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_BODY: usize = 1 << 20;
const CT: &str = "application/x-amz-json-1.0";

/// The tables' directory.
pub struct Tables {
    root: PathBuf,
}

fn table_name_ok(t: &str) -> bool {
    (3..=255).contains(&t.len()) && t.bytes().all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c))
}

impl Tables {
    pub fn open(data: &Path) -> std::io::Result<Tables> {
        let root = data.join("dynamodb");
        fs::create_dir_all(&root)?;
        Ok(Tables { root })
    }

    /// Declares a table and its partition key (the lab does, from the config).
    pub fn create(&self, table: &str, key: &str) -> std::io::Result<()> {
        if !table_name_ok(table) {
            return Err(std::io::Error::other(format!("`{table}` is not a valid table name")));
        }
        fs::write(self.root.join(format!("{table}.key")), key)
    }

    fn key_of(&self, table: &str) -> Option<String> {
        if !table_name_ok(table) {
            return None;
        }
        fs::read_to_string(self.root.join(format!("{table}.key"))).ok().map(|s| s.trim().to_string())
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".key").map(str::to_string))
            .collect();
        v.sort();
        v
    }

    /// Runs `f` on the table's items under its lock, saving them if `f` says so.
    fn with_items<T>(&self, table: &str, f: impl FnOnce(&mut Map<String, Value>) -> (T, bool)) -> std::io::Result<T> {
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(format!("{table}.lock")))?;
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        let path = self.root.join(format!("{table}.json"));
        // A table never written is empty; one that cannot be read or parsed is
        // an error (never read as empty, which the next write would make true).
        let mut items: Map<String, Value> = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::other(format!("{} does not parse ({e}); it was left as it is", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(std::io::Error::other(format!("reading {}: {e}", path.display()))),
        };
        let (out, save) = f(&mut items);
        if save {
            super::write_atomic(&path, &serde_json::to_vec(&items).map_err(std::io::Error::other)?)?;
        }
        Ok(out)
    }
}

fn error(kind: &str, message: &str) -> Reply {
    let ns =
        if kind == "AccessDeniedException" { "com.amazon.coral.service" } else { "com.amazonaws.dynamodb.v20120810" };
    let body = json!({"__type": format!("{ns}#{kind}"), "message": message});
    Reply::new(400, CT, body.to_string().into_bytes())
}

fn ok(v: Value) -> Reply {
    Reply::new(200, CT, v.to_string().into_bytes())
}

/// The item's key as a stable string: the key attribute's typed value.
fn key_string(item: &Map<String, Value>, key: &str) -> Option<String> {
    let v = item.get(key)?.as_object()?;
    let (t, val) = v.iter().next()?;
    matches!(t.as_str(), "S" | "N" | "B").then(|| format!("{t}:{}", val.as_str().unwrap_or_default()))
}

/// Answers one request.
pub fn handle(o: &Options, mut rq: tiny_http::Request) -> std::io::Result<()> {
    let reply = answer(o, &mut rq);
    tracing::debug!(target = header(&rq, "X-Amz-Target").unwrap_or(""), status = reply.status, "dynamodb");
    reply.send(rq)
}

fn answer(o: &Options, rq: &mut tiny_http::Request) -> Reply {
    let Ok(tables) = Tables::open(&o.data) else {
        return error("InternalServerError", "the tables' directory is not usable");
    };
    if *rq.method() != tiny_http::Method::Post {
        return Reply::new(200, "text/plain", b"healthy: natgw's DynamoDB stand-in\n".to_vec());
    }
    let Some(op) = header(rq, "X-Amz-Target").and_then(|t| t.strip_prefix("DynamoDB_20120810.")).map(str::to_string)
    else {
        return error("UnknownOperationException", "no X-Amz-Target");
    };
    let req: Map<String, Value> = match body(rq, MAX_BODY).map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(Value::Object(m))) => m,
        Ok(_) => return error("SerializationException", "the body is not a JSON object"),
        Err(e) => return error("ValidationException", &e),
    };
    let table = req.get("TableName").and_then(Value::as_str).unwrap_or("").to_string();
    let resource = if table.is_empty() {
        format!("arn:aws:dynamodb:{}:{}:table/*", o.region, super::ACCOUNT)
    } else {
        format!("arn:aws:dynamodb:{}:{}:table/{table}", o.region, super::ACCOUNT)
    };
    let peer = rq.remote_addr().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    if let Err(why) = authorize(o, &context(o, &format!("dynamodb:{op}"), resource.clone(), peer), None) {
        tracing::info!(op, peer = %peer, door = ?o.door, ?why, "denied");
        return error(
            "AccessDeniedException",
            &format!(
                "User: arn:aws:iam::{}:root is not authorized to perform: dynamodb:{op} on resource: {resource} because no VPC endpoint policy allows the dynamodb:{op} action",
                super::ACCOUNT
            ),
        );
    }
    if op == "ListTables" {
        return ok(json!({"TableNames": tables.names()}));
    }
    let Some(key) = tables.key_of(&table) else {
        return error("ResourceNotFoundException", "Requested resource not found");
    };
    let r = match op.as_str() {
        "DescribeTable" => Ok(ok(json!({"Table": {
            "TableName": table, "TableStatus": "ACTIVE",
            "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
            "TableArn": resource,
        }}))),
        "PutItem" => {
            let Some(item) = req.get("Item").and_then(Value::as_object).cloned() else {
                return error("ValidationException", "PutItem needs an Item");
            };
            let Some(k) = key_string(&item, &key) else {
                return error("ValidationException", &format!("One of the required keys was not given a value: {key}"));
            };
            tables.with_items(&table, |items| {
                items.insert(k, Value::Object(item));
                (ok(json!({})), true)
            })
        }
        "GetItem" | "DeleteItem" => {
            let Some(k) = req.get("Key").and_then(Value::as_object).and_then(|m| key_string(m, &key)) else {
                return error("ValidationException", "The provided key element does not match the schema");
            };
            let delete = op == "DeleteItem";
            tables.with_items(&table, |items| {
                let found = if delete { items.remove(&k) } else { items.get(&k).cloned() };
                let reply = match (found, delete) {
                    (Some(i), false) => ok(json!({"Item": i})),
                    _ => ok(json!({})),
                };
                (reply, delete)
            })
        }
        "Scan" => tables.with_items(&table, |items| {
            let all: Vec<Value> = items.values().cloned().collect();
            (ok(json!({"Items": all, "Count": all.len(), "ScannedCount": all.len()})), false)
        }),
        _ => return error("UnknownOperationException", &format!("natgw's DynamoDB does not implement {op}")),
    };
    r.unwrap_or_else(|e| error("InternalServerError", &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_typed_values() {
        let item: Map<String, Value> = serde_json::from_str(r#"{"id": {"S": "42"}, "n": {"N": "1"}}"#).expect("json");
        assert_eq!(key_string(&item, "id").as_deref(), Some("S:42"));
        assert_eq!(key_string(&item, "n").as_deref(), Some("N:1"));
        assert_eq!(key_string(&item, "missing"), None);
        assert!(table_name_ok("orders") && !table_name_ok("../x") && !table_name_ok("ab"));
    }

    #[test]
    fn items_persist_across_opens() {
        let d = std::env::temp_dir().join(format!("natgw-ddb-{}", std::process::id()));
        let t = Tables::open(&d).expect("open");
        t.create("orders", "id").expect("create");
        t.with_items("orders", |m| {
            m.insert("S:1".into(), json!({"id": {"S": "1"}}));
            ((), true)
        })
        .expect("write");
        let t2 = Tables::open(&d).expect("open");
        let n = t2.with_items("orders", |m| (m.len(), false)).expect("read");
        assert_eq!(n, 1);
        assert_eq!(t2.names(), vec!["orders".to_string()]);
        // A damaged table is an error and stays as it was: a write never
        // replaces what could not be read.
        fs::write(d.join("dynamodb/orders.json"), b"{ half a fi").expect("damage");
        let e = t2
            .with_items("orders", |m| {
                m.clear();
                ((), true)
            })
            .expect_err("a damaged table");
        assert!(e.to_string().contains("does not parse"), "{e}");
        assert_eq!(fs::read(d.join("dynamodb/orders.json")).expect("still there"), b"{ half a fi");
        let _ = fs::remove_dir_all(&d);
    }
}
