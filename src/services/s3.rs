//! The S3-like object store: enough of the S3 REST API for the `aws` CLI
//! (`aws s3 ls`, `aws s3 cp` both ways, multipart above 8 MB, ranged GETs,
//! `aws s3 rm`, `aws s3api get-bucket-policy` / `put-bucket-policy` /
//! `head-object` / `list-objects-v2`), path-style or virtual-hosted, with the
//! bucket's policy and the endpoint's policy evaluated on every request.
//!
//! Storage: `DATA/s3/<bucket>/` is a bucket; an object is `o-<hex key>`
//! beside its metadata `m-<hex key>` (JSON: ETag, type), each written to a
//! temporary file and renamed, so two doors may share the directory; a
//! bucket's policy is `DATA/s3/<bucket>.policy.json`; multipart uploads live
//! under `DATA/s3/.uploads/`.

use super::http::{Body, Reply, body, header, split_url, xml_escape};
use super::policy::Policy;
use super::{Options, Refusal, authorize, context, write_atomic};
use md5::{Digest, Md5};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A single PUT or part of at most this much (S3's is 5 GiB; a lab's is less).
const MAX_PUT: usize = 256 << 20;
/// Bodies of policy and multipart-completion requests.
const MAX_SMALL: usize = 1 << 20;
const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// The store's directory.
pub struct Store {
    root: PathBuf,
}

fn hex(s: &[u8]) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let b: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    String::from_utf8(b?).ok()
}

/// S3's bucket naming rules (the common subset).
pub fn bucket_name_ok(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    etag: String,
    content_type: String,
}

/// One object as a listing shows it.
pub struct Object {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub modified: std::time::SystemTime,
}

impl Store {
    /// Opens (and makes) the store under `data`.
    pub fn open(data: &Path) -> std::io::Result<Store> {
        let root = data.join("s3");
        fs::create_dir_all(root.join(".uploads"))?;
        Ok(Store { root })
    }

    fn bucket_dir(&self, b: &str) -> Option<PathBuf> {
        let d = self.root.join(b);
        (bucket_name_ok(b) && d.is_dir()).then_some(d)
    }

    /// Makes a bucket (the lab does, from the config).
    pub fn create_bucket(&self, b: &str) -> std::io::Result<()> {
        if !bucket_name_ok(b) {
            return Err(std::io::Error::other(format!("`{b}` is not a valid bucket name")));
        }
        fs::create_dir_all(self.root.join(b))
    }

    pub fn buckets(&self) -> Vec<(String, std::time::SystemTime)> {
        let mut v: Vec<_> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let t = e.metadata().and_then(|m| m.modified()).ok()?;
                bucket_name_ok(&n).then_some((n, t))
            })
            .collect();
        v.sort();
        v
    }

    fn policy_path(&self, b: &str) -> PathBuf {
        self.root.join(format!("{b}.policy.json"))
    }

    /// The bucket's policy, if it has one. A policy file that no longer
    /// parses denies everything (never silently allows).
    pub fn policy(&self, b: &str) -> Result<Option<Policy>, String> {
        match fs::read_to_string(self.policy_path(b)) {
            Ok(t) => Policy::parse(&t).map(Some),
            Err(_) => Ok(None),
        }
    }

    pub fn set_policy(&self, b: &str, text: &str) -> std::io::Result<()> {
        write_atomic(&self.policy_path(b), text.as_bytes())
    }

    fn delete_policy(&self, b: &str) {
        let _ = fs::remove_file(self.policy_path(b));
    }

    fn meta(&self, dir: &Path, key: &str) -> Option<(Meta, fs::Metadata)> {
        let m = fs::metadata(dir.join(format!("o-{}", hex(key.as_bytes())))).ok()?;
        let meta = fs::read(dir.join(format!("m-{}", hex(key.as_bytes()))))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Meta { etag: String::new(), content_type: "binary/octet-stream".into() });
        Some((meta, m))
    }

    /// Stores an object; returns its ETag.
    pub fn put(&self, dir: &Path, key: &str, data: &[u8], content_type: &str) -> std::io::Result<String> {
        let etag = hex(&Md5::digest(data));
        self.put_with(dir, key, data, Meta { etag: etag.clone(), content_type: content_type.to_string() })?;
        Ok(etag)
    }

    fn put_with(&self, dir: &Path, key: &str, data: &[u8], meta: Meta) -> std::io::Result<()> {
        let h = hex(key.as_bytes());
        write_atomic(&dir.join(format!("m-{h}")), &serde_json::to_vec(&meta).map_err(std::io::Error::other)?)?;
        write_atomic(&dir.join(format!("o-{h}")), data)
    }

    /// Every object of a bucket, sorted by key.
    pub fn list(&self, dir: &Path) -> Vec<Object> {
        let mut v: Vec<Object> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = unhex(name.strip_prefix("o-")?)?;
                let m = e.metadata().ok()?;
                let etag = self.meta(dir, &key).map(|(meta, _)| meta.etag).unwrap_or_default();
                Some(Object { key, size: m.len(), etag, modified: m.modified().ok()? })
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

fn error(status: u16, code: &str, message: &str, resource: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>NATGWLAB</RequestId></Error>",
        xml_escape(message),
        xml_escape(resource)
    );
    Reply::new(status, "application/xml", body.into_bytes())
}

fn xml(body: String) -> Reply {
    Reply::new(200, "application/xml", format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}").into_bytes())
}

fn iso(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// What one request asks for.
struct Target {
    bucket: Option<String>,
    key: Option<String>,
}

/// The bucket and key: virtual-hosted (`<bucket>.s3.<region>...`) or path-style.
fn target(host: Option<&str>, path: &str) -> Target {
    let host = host.map(|h| h.split(':').next().unwrap_or(h)).unwrap_or("");
    let path = path.trim_start_matches('/');
    if let Some((b, _)) = host.split_once(".s3.")
        && !b.is_empty()
    {
        let key = (!path.is_empty()).then(|| path.to_string());
        return Target { bucket: Some(b.to_string()), key };
    }
    match path.split_once('/') {
        Some((b, k)) => Target { bucket: Some(b.to_string()), key: (!k.is_empty()).then(|| k.to_string()) },
        None if path.is_empty() => Target { bucket: None, key: None },
        None => Target { bucket: Some(path.to_string()), key: None },
    }
}

/// Answers one request.
pub fn handle(o: &Options, mut rq: tiny_http::Request) -> std::io::Result<()> {
    let reply = answer(o, &mut rq);
    tracing::debug!(method = %rq.method(), url = rq.url(), status = reply.status, "s3");
    reply.send(rq)
}

fn q<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn has(query: &[(String, String)], k: &str) -> bool {
    query.iter().any(|(n, _)| n == k)
}

fn answer(o: &Options, rq: &mut tiny_http::Request) -> Reply {
    let Ok(store) = Store::open(&o.data) else {
        return error(500, "InternalError", "the store's directory is not usable", "");
    };
    let (path, query) = split_url(rq.url());
    let t = target(header(rq, "Host"), &path);
    let peer = rq.remote_addr().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let method = rq.method().clone();
    use tiny_http::Method::{Delete, Get, Head, Post, Put};
    // Which operation, as IAM names its action.
    let (action, resource) = match (&method, &t.bucket, &t.key) {
        (Get, None, _) => ("s3:ListAllMyBuckets", "*".to_string()),
        (_, None, _) => return error(405, "MethodNotAllowed", "The specified method is not allowed", "/"),
        (Get | Head, Some(b), None) if has(&query, "policy") => ("s3:GetBucketPolicy", format!("arn:aws:s3:::{b}")),
        (Put, Some(b), None) if has(&query, "policy") => ("s3:PutBucketPolicy", format!("arn:aws:s3:::{b}")),
        (Delete, Some(b), None) if has(&query, "policy") => ("s3:DeleteBucketPolicy", format!("arn:aws:s3:::{b}")),
        (Get, Some(b), None) if has(&query, "location") => ("s3:GetBucketLocation", format!("arn:aws:s3:::{b}")),
        (Get | Head, Some(b), None) => ("s3:ListBucket", format!("arn:aws:s3:::{b}")),
        (Get | Head, Some(b), Some(k)) => ("s3:GetObject", format!("arn:aws:s3:::{b}/{k}")),
        (Put | Post, Some(b), Some(k)) => ("s3:PutObject", format!("arn:aws:s3:::{b}/{k}")),
        (Delete, Some(b), Some(k)) if has(&query, "uploadId") => {
            ("s3:AbortMultipartUpload", format!("arn:aws:s3:::{b}/{k}"))
        }
        (Delete, Some(b), Some(k)) => ("s3:DeleteObject", format!("arn:aws:s3:::{b}/{k}")),
        _ => return error(501, "NotImplemented", "natgw's S3 does not implement this request", &path),
    };
    let dir = match &t.bucket {
        Some(b) => match store.bucket_dir(b) {
            Some(d) => Some(d),
            None => return error(404, "NoSuchBucket", "The specified bucket does not exist", b),
        },
        None => None,
    };
    let bucket = t.bucket.as_deref().unwrap_or("");
    let policy = match &t.bucket {
        Some(b) => match store.policy(b) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(bucket = b, error = %e, "the bucket's policy does not parse: denying");
                return error(403, "AccessDenied", "Access Denied", &path);
            }
        },
        None => None,
    };
    let cx = context(o, action, resource, peer);
    if let Err(why) = authorize(o, &cx, policy.as_ref()) {
        let by = match &why {
            Refusal::EndpointPolicy(_) => "the VPC endpoint's policy",
            Refusal::ResourcePolicy(_) => "the bucket's policy",
        };
        tracing::info!(action, peer = %peer, door = ?o.door, ?why, "denied");
        return error(403, "AccessDenied", &format!("Access Denied (by {by})"), &path);
    }
    let Some(dir) = dir else { return list_buckets(&store) };
    match (method, t.key) {
        (Get | Head, None) if has(&query, "policy") => match policy {
            Some(p) => Reply::new(200, "application/json", p.text.into_bytes()),
            None => error(404, "NoSuchBucketPolicy", "The bucket policy does not exist", bucket),
        },
        (Put, None) if has(&query, "policy") => {
            let text = match body(rq, MAX_SMALL) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => return error(400, "MalformedPolicy", &e, bucket),
            };
            if let Err(e) = Policy::parse(&text) {
                return error(400, "MalformedPolicy", &e, bucket);
            }
            match store.set_policy(bucket, &text) {
                Ok(()) => Reply::empty(204),
                Err(e) => error(500, "InternalError", &e.to_string(), bucket),
            }
        }
        (Delete, None) => {
            store.delete_policy(bucket);
            Reply::empty(204)
        }
        (Get, None) if has(&query, "location") => {
            xml(format!("<LocationConstraint xmlns=\"{XMLNS}\">{}</LocationConstraint>", xml_escape(&o.region)))
        }
        (Head, None) => Reply::empty(200).header("x-amz-bucket-region", o.region.clone()),
        (Get, None) => list_objects(&store, &dir, bucket, &query),
        (Get | Head, Some(k)) => get_object(&store, &dir, &k, header(rq, "Range")),
        (Put, Some(k)) => match (q(&query, "partNumber"), q(&query, "uploadId")) {
            (Some(n), Some(id)) => put_part(&store, &k, n, id, rq),
            _ => put_object(&store, &dir, &k, rq),
        },
        (Post, Some(k)) if has(&query, "uploads") => create_upload(&store, bucket, &k),
        (Post, Some(k)) => match q(&query, "uploadId") {
            Some(id) => complete_upload(&store, &dir, bucket, &k, id, rq),
            None => error(501, "NotImplemented", "natgw's S3 does not implement this request", &path),
        },
        (Delete, Some(k)) => match q(&query, "uploadId") {
            Some(id) => {
                let _ = upload_dir(&store, id).map(fs::remove_dir_all);
                Reply::empty(204)
            }
            None => {
                let h = hex(k.as_bytes());
                let _ = fs::remove_file(dir.join(format!("o-{h}")));
                let _ = fs::remove_file(dir.join(format!("m-{h}")));
                Reply::empty(204)
            }
        },
        _ => error(501, "NotImplemented", "natgw's S3 does not implement this request", &path),
    }
}

fn list_buckets(store: &Store) -> Reply {
    let mut s = format!(
        "<ListAllMyBucketsResult xmlns=\"{XMLNS}\"><Owner><ID>{}</ID><DisplayName>lab</DisplayName></Owner><Buckets>",
        super::ACCOUNT
    );
    for (b, t) in store.buckets() {
        s.push_str(&format!("<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>", xml_escape(&b), iso(t)));
    }
    s.push_str("</Buckets></ListAllMyBucketsResult>");
    xml(s)
}

fn list_objects(store: &Store, dir: &Path, bucket: &str, query: &[(String, String)]) -> Reply {
    let v2 = q(query, "list-type") == Some("2");
    let prefix = q(query, "prefix").unwrap_or("");
    let delimiter = q(query, "delimiter").filter(|d| !d.is_empty());
    let max_keys: usize = q(query, "max-keys").and_then(|m| m.parse().ok()).unwrap_or(1000).min(1000);
    // Where to start: v2's continuation token (the last key, hex) or start-after; v1's marker.
    let after = if v2 {
        q(query, "continuation-token").and_then(unhex).or_else(|| q(query, "start-after").map(str::to_string))
    } else {
        q(query, "marker").map(str::to_string)
    };
    let mut contents = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last = String::new();
    for obj in store.list(dir) {
        if !obj.key.starts_with(prefix) || after.as_ref().is_some_and(|a| obj.key.as_str() <= a.as_str()) {
            continue;
        }
        let common = delimiter
            .and_then(|d| obj.key[prefix.len()..].find(d).map(|i| obj.key[..prefix.len() + i + d.len()].to_string()));
        if let Some(c) = &common
            && prefixes.last() == Some(c)
        {
            continue;
        }
        if contents.len() + prefixes.len() == max_keys {
            truncated = true;
            break;
        }
        last = common.clone().unwrap_or_else(|| obj.key.clone());
        match common {
            Some(c) => prefixes.push(c),
            None => contents.push(obj),
        }
    }
    let mut s = format!(
        "<ListBucketResult xmlns=\"{XMLNS}\"><Name>{}</Name><Prefix>{}</Prefix><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        xml_escape(bucket),
        xml_escape(prefix)
    );
    if let Some(d) = delimiter {
        s.push_str(&format!("<Delimiter>{}</Delimiter>", xml_escape(d)));
    }
    if v2 {
        s.push_str(&format!("<KeyCount>{}</KeyCount>", contents.len() + prefixes.len()));
        if truncated {
            s.push_str(&format!("<NextContinuationToken>{}</NextContinuationToken>", hex(last.as_bytes())));
        }
    } else if truncated {
        s.push_str(&format!("<NextMarker>{}</NextMarker>", xml_escape(&last)));
    }
    for o in &contents {
        s.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            xml_escape(&o.key),
            iso(o.modified),
            o.etag,
            o.size
        ));
    }
    for p in &prefixes {
        s.push_str(&format!("<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>", xml_escape(p)));
    }
    s.push_str("</ListBucketResult>");
    xml(s)
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against an object of `len` bytes.
fn range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len.checked_sub(1)?)),
    };
    (start <= end && start < len).then_some((start, end))
}

fn get_object(store: &Store, dir: &Path, key: &str, range_header: Option<&str>) -> Reply {
    let Some((meta, m)) = store.meta(dir, key) else {
        return error(404, "NoSuchKey", "The specified key does not exist.", key);
    };
    let Ok(mut f) = fs::File::open(dir.join(format!("o-{}", hex(key.as_bytes())))) else {
        return error(404, "NoSuchKey", "The specified key does not exist.", key);
    };
    let len = m.len();
    let modified = m.modified().map(httpdate::fmt_http_date).unwrap_or_default();
    let base = |status: u16, n: u64, r: Box<dyn Read + Send>| Reply {
        status,
        headers: vec![
            ("Content-Type".into(), meta.content_type.clone()),
            ("ETag".into(), format!("\"{}\"", meta.etag)),
            ("Last-Modified".into(), modified.clone()),
            ("Accept-Ranges".into(), "bytes".into()),
        ],
        body: Body::Reader(r, n as usize),
    };
    match range_header {
        Some(h) => match range(h, len) {
            Some((a, b)) => {
                if f.seek(SeekFrom::Start(a)).is_err() {
                    return error(500, "InternalError", "seek", key);
                }
                base(206, b - a + 1, Box::new(f.take(b - a + 1)))
                    .header("Content-Range", format!("bytes {a}-{b}/{len}"))
            }
            None => error(416, "InvalidRange", "The requested range is not satisfiable", key),
        },
        None => base(200, len, Box::new(f)),
    }
}

fn put_object(store: &Store, dir: &Path, key: &str, rq: &mut tiny_http::Request) -> Reply {
    let ctype = header(rq, "Content-Type").unwrap_or("binary/octet-stream").to_string();
    let data = match body(rq, MAX_PUT) {
        Ok(d) => d,
        Err(e) => return error(400, "EntityTooLarge", &e, key),
    };
    match store.put(dir, key, &data, &ctype) {
        Ok(etag) => Reply::empty(200).header("ETag", format!("\"{etag}\"")),
        Err(e) => error(500, "InternalError", &e.to_string(), key),
    }
}

fn upload_dir(store: &Store, id: &str) -> Option<PathBuf> {
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| store.root.join(".uploads").join(id))
}

fn create_upload(store: &Store, bucket: &str, key: &str) -> Reply {
    let id = hex(&rand::random::<[u8; 16]>());
    let Some(d) = upload_dir(store, &id) else { return error(500, "InternalError", "upload id", key) };
    if let Err(e) = fs::create_dir_all(&d) {
        return error(500, "InternalError", &e.to_string(), key);
    }
    xml(format!(
        "<InitiateMultipartUploadResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>",
        xml_escape(bucket),
        xml_escape(key)
    ))
}

fn put_part(store: &Store, key: &str, n: &str, id: &str, rq: &mut tiny_http::Request) -> Reply {
    let Some(d) = upload_dir(store, id).filter(|d| d.is_dir()) else {
        return error(404, "NoSuchUpload", "The specified upload does not exist.", key);
    };
    let Some(n) = n.parse::<u32>().ok().filter(|n| (1..=10_000).contains(n)) else {
        return error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000", key);
    };
    let data = match body(rq, MAX_PUT) {
        Ok(d) => d,
        Err(e) => return error(400, "EntityTooLarge", &e, key),
    };
    let etag = hex(&Md5::digest(&data));
    match write_atomic(&d.join(format!("{n:05}")), &data) {
        Ok(()) => Reply::empty(200).header("ETag", format!("\"{etag}\"")),
        Err(e) => error(500, "InternalError", &e.to_string(), key),
    }
}

/// The part numbers a CompleteMultipartUpload body lists, in order.
fn listed_parts(xml: &str) -> Vec<u32> {
    xml.split("<PartNumber>").skip(1).filter_map(|s| s.split("</PartNumber>").next()?.trim().parse().ok()).collect()
}

fn complete_upload(store: &Store, dir: &Path, bucket: &str, key: &str, id: &str, rq: &mut tiny_http::Request) -> Reply {
    let Some(d) = upload_dir(store, id).filter(|d| d.is_dir()) else {
        return error(404, "NoSuchUpload", "The specified upload does not exist.", key);
    };
    let listed = match body(rq, MAX_SMALL) {
        Ok(b) => listed_parts(&String::from_utf8_lossy(&b)),
        Err(e) => return error(400, "MalformedXML", &e, key),
    };
    if listed.is_empty() || listed.windows(2).any(|w| w[0] >= w[1]) {
        return error(400, "InvalidPartOrder", "The list of parts was not in ascending order.", key);
    }
    let mut data = Vec::new();
    let mut digests = Vec::new();
    for n in &listed {
        match fs::read(d.join(format!("{n:05}"))) {
            Ok(p) => {
                digests.extend_from_slice(&Md5::digest(&p));
                data.extend_from_slice(&p);
            }
            Err(_) => return error(400, "InvalidPart", &format!("part {n} was not uploaded"), key),
        }
    }
    let etag = format!("{}-{}", hex(&Md5::digest(&digests)), listed.len());
    let meta = Meta { etag: etag.clone(), content_type: "binary/octet-stream".into() };
    if let Err(e) = store.put_with(dir, key, &data, meta) {
        return error(500, "InternalError", &e.to_string(), key);
    }
    let _ = fs::remove_dir_all(&d);
    xml(format!(
        "<CompleteMultipartUploadResult xmlns=\"{XMLNS}\"><Location>/{b}/{k}</Location><Bucket>{b}</Bucket><Key>{k}</Key><ETag>&quot;{etag}&quot;</ETag></CompleteMultipartUploadResult>",
        b = xml_escape(bucket),
        k = xml_escape(key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_and_key_from_path_or_host() {
        let t = target(Some("s3.ap-northeast-2.amazonaws.com"), "/lab-bucket/a/b.txt");
        assert_eq!((t.bucket.as_deref(), t.key.as_deref()), (Some("lab-bucket"), Some("a/b.txt")));
        let t = target(Some("lab-bucket.s3.ap-northeast-2.amazonaws.com:80"), "/a/b.txt");
        assert_eq!((t.bucket.as_deref(), t.key.as_deref()), (Some("lab-bucket"), Some("a/b.txt")));
        let t = target(Some("s3.ap-northeast-2.amazonaws.com"), "/");
        assert!(t.bucket.is_none());
        let t = target(None, "/b/");
        assert_eq!((t.bucket.as_deref(), t.key), (Some("b"), None));
    }

    #[test]
    fn ranges_as_rfc_9110_defines_them() {
        assert_eq!(range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(range("bytes=100-", 100), None);
        assert_eq!(range("bytes=9-0", 100), None);
        assert_eq!(range("items=0-1", 100), None);
        assert_eq!(range("bytes=0-0", 0), None);
    }

    #[test]
    fn keys_survive_the_file_names() {
        for k in ["a", "dir/sub/file.txt", "한글 키", "../../etc/passwd"] {
            let h = hex(k.as_bytes());
            assert!(!h.contains('/') && !h.contains('.'));
            assert_eq!(unhex(&h).as_deref(), Some(k));
        }
        assert_eq!(
            listed_parts("<P><Part><PartNumber>1</PartNumber></Part><Part><PartNumber> 2 </PartNumber></Part></P>"),
            vec![1, 2]
        );
        assert!(
            bucket_name_ok("lab-bucket") && !bucket_name_ok("Lab") && !bucket_name_ok("ab") && !bucket_name_ok("..")
        );
    }
}
