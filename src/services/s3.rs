//! The S3-like object store: enough of the S3 REST API for the `aws` CLI
//! (`aws s3 ls`, `aws s3 cp` in every direction including s3 to s3,
//! `aws s3 mv`, multipart above 8 MB, ranged GETs, `aws s3 rm`, `aws s3api
//! get-bucket-policy` / `put-bucket-policy` / `head-object` /
//! `list-objects-v2` / `copy-object`), path-style or virtual-hosted, with the
//! bucket's policy and the endpoint's policy evaluated on every request. A
//! request this store does not implement (a query parameter it does not know,
//! `?acl`, `?tagging`, `versionId`, ...) gets `501 NotImplemented`, never an
//! answer to a different question.
//!
//! Storage: `DATA/s3/<bucket>/` is a bucket. An object is one file,
//! `o-<hex MD5 of the key>`: its bytes, then a JSON trailer (key, ETag,
//! content type), then the trailer's length (4 bytes, big-endian). It is
//! written to a temporary file and renamed, so two doors sharing the
//! directory never see half an object, nor an object beside another's
//! metadata; a reader holds one open file for both. A bucket's policy is
//! `DATA/s3/<bucket>.policy.json`; multipart uploads live under
//! `DATA/s3/.uploads/<id>/`.

use super::http::{Body, Reply, body, header, split_url, xml_escape};
use super::policy::Policy;
use super::{Options, Refusal, authorize, context, write_atomic};
use md5::{Digest, Md5};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A single PUT or part of at most this much (S3's is 5 GiB; a lab's is less).
const MAX_PUT: usize = 256 << 20;
/// Bodies of policy and multipart-completion requests.
const MAX_SMALL: usize = 1 << 20;
/// An object's trailer (its key is at most 1024 bytes).
const MAX_TRAILER: u64 = 16 << 10;
const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// The query parameters this store understands; any other is 501.
/// (`X-Amz-*` are a presigned URL's signature, accepted and not checked, as
/// the lab treats every request as the owner's.)
const KNOWN_QUERY: [&str; 16] = [
    "list-type",
    "prefix",
    "delimiter",
    "max-keys",
    "continuation-token",
    "start-after",
    "marker",
    "encoding-type",
    "fetch-owner",
    "policy",
    "location",
    "uploads",
    "uploadId",
    "partNumber",
    "x-id",
    "tagging",
];

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

/// What an object's file says of it after its bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Trailer {
    key: String,
    etag: String,
    content_type: String,
}

/// An object, opened: what it is, and its file (the bytes are `0..size`).
struct Stored {
    trailer: Trailer,
    file: fs::File,
    size: u64,
    modified: SystemTime,
}

/// One object as a listing shows it.
pub struct Object {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub modified: SystemTime,
}

fn object_name(key: &str) -> String {
    format!("o-{}", hex(&Md5::digest(key.as_bytes())))
}

fn is_object_name(n: &str) -> bool {
    n.strip_prefix("o-").is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn damaged(path: &Path, what: &str) -> std::io::Error {
    std::io::Error::other(format!("{}: {what}", path.display()))
}

/// Opens an object's file and reads its trailer; None if there is no such file.
fn open_stored(path: &Path) -> std::io::Result<Option<Stored>> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let m = file.metadata()?;
    let len = m.len();
    if len < 4 {
        return Err(damaged(path, "too short to be an object"));
    }
    let mut n = [0u8; 4];
    file.seek(SeekFrom::Start(len - 4))?;
    file.read_exact(&mut n)?;
    let n = u64::from(u32::from_be_bytes(n));
    if n > MAX_TRAILER || n > len - 4 {
        return Err(damaged(path, "its trailer's length is impossible"));
    }
    let size = len - 4 - n;
    let mut t = vec![0u8; n as usize];
    file.seek(SeekFrom::Start(size))?;
    file.read_exact(&mut t)?;
    let trailer = serde_json::from_slice(&t).map_err(|e| damaged(path, &format!("its trailer does not parse: {e}")))?;
    file.seek(SeekFrom::Start(0))?;
    Ok(Some(Stored { trailer, file, size, modified: m.modified()? }))
}

/// Writes through to `inner`, hashing what passes (an object's ETag).
struct Hashing<W> {
    inner: W,
    md5: Md5,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.md5.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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

    pub fn buckets(&self) -> Vec<(String, SystemTime)> {
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

    /// The bucket's policy, if it has one. A policy file that cannot be read
    /// or no longer parses denies everything (never silently allows).
    pub fn policy(&self, b: &str) -> Result<Option<Policy>, String> {
        match fs::read_to_string(self.policy_path(b)) {
            Ok(t) => Policy::parse(&t).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", self.policy_path(b).display())),
        }
    }

    pub fn set_policy(&self, b: &str, text: &str) -> std::io::Result<()> {
        write_atomic(&self.policy_path(b), text.as_bytes())
    }

    fn delete_policy(&self, b: &str) {
        let _ = fs::remove_file(self.policy_path(b));
    }

    /// The object `key` of the bucket in `dir`, opened.
    fn object(&self, dir: &Path, key: &str) -> std::io::Result<Option<Stored>> {
        // Two keys of one MD5 would share a file; the trailer says whose it is.
        Ok(open_stored(&dir.join(object_name(key)))?.filter(|s| s.trailer.key == key))
    }

    /// Writes an object whole or not at all: `fill` writes its bytes and
    /// may name its ETag (a multipart upload's); by default the ETag is the
    /// bytes' MD5. Returns the ETag.
    fn write_object(
        &self,
        dir: &Path,
        key: &str,
        content_type: &str,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<Option<String>>,
    ) -> std::io::Result<String> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".new-{}-{n}", std::process::id()));
        let write = || -> std::io::Result<String> {
            let mut w = Hashing { inner: std::io::BufWriter::new(fs::File::create(&tmp)?), md5: Md5::new() };
            let named = fill(&mut w)?;
            let etag = named.unwrap_or_else(|| hex(&w.md5.finalize_reset()));
            let t = serde_json::to_vec(&Trailer {
                key: key.to_string(),
                etag: etag.clone(),
                content_type: content_type.to_string(),
            })
            .map_err(std::io::Error::other)?;
            w.inner.write_all(&t)?;
            w.inner.write_all(&(t.len() as u32).to_be_bytes())?;
            w.inner.into_inner().map_err(|e| e.into_error())?.sync_data()?;
            fs::rename(&tmp, dir.join(object_name(key)))?;
            Ok(etag)
        };
        let r = write();
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }

    /// Stores an object; returns its ETag.
    pub fn put(&self, dir: &Path, key: &str, data: &[u8], content_type: &str) -> std::io::Result<String> {
        self.write_object(dir, key, content_type, |w| w.write_all(data).map(|()| None))
    }

    fn delete(&self, dir: &Path, key: &str) -> std::io::Result<()> {
        if self.object(dir, key)?.is_some() {
            fs::remove_file(dir.join(object_name(key)))?;
        }
        Ok(())
    }

    /// Every object of a bucket, sorted by key. A damaged object file is
    /// left out, with a warning naming it.
    pub fn list(&self, dir: &Path) -> Vec<Object> {
        let mut v: Vec<Object> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| is_object_name(&e.file_name().to_string_lossy()))
            .filter_map(|e| match open_stored(&e.path()) {
                Ok(s) => {
                    s.map(|s| Object { key: s.trailer.key, size: s.size, etag: s.trailer.etag, modified: s.modified })
                }
                Err(err) => {
                    tracing::warn!(error = %err, "an object file that cannot be read: left out of the listing");
                    None
                }
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

/// The bucket and key: virtual-hosted (`<bucket>.s3.<region>...`) or
/// path-style. An interface endpoint's names carry its id before `.s3.`
/// (`vpce-0abc-1de2.s3.<region>.vpce.amazonaws.com` is path-style;
/// `<bucket>.vpce-0abc-1de2.s3...` virtual-hosted); the id is no bucket.
fn target(host: Option<&str>, path: &str) -> Target {
    let host = host.map(|h| h.split(':').next().unwrap_or(h)).unwrap_or("");
    let path = path.trim_start_matches('/');
    if let Some((before, _)) = host.split_once(".s3.") {
        let interface_endpoint = host.ends_with(".vpce.amazonaws.com");
        let b = match before.rsplit_once('.') {
            Some((b, id)) if interface_endpoint && id.starts_with("vpce-") => b,
            None if interface_endpoint && before.starts_with("vpce-") => "",
            _ => before,
        };
        if !b.is_empty() {
            let key = (!path.is_empty()).then(|| path.to_string());
            return Target { bucket: Some(b.to_string()), key };
        }
    }
    match path.split_once('/') {
        Some((b, k)) => Target { bucket: Some(b.to_string()), key: (!k.is_empty()).then(|| k.to_string()) },
        None if path.is_empty() => Target { bucket: None, key: None },
        None => Target { bucket: Some(path.to_string()), key: None },
    }
}

/// `x-amz-copy-source`: `[/]bucket/key`, URL-encoded.
fn copy_source(h: &str) -> Result<(String, String), Reply> {
    let decoded = percent_encoding::percent_decode_str(h).decode_utf8_lossy().into_owned();
    if decoded.contains("?versionId=") {
        return Err(error(501, "NotImplemented", "natgw's S3 keeps no versions (versionId)", h));
    }
    match decoded.trim_start_matches('/').split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b.to_string(), k.to_string())),
        _ => Err(error(400, "InvalidArgument", "x-amz-copy-source must be bucket/key", h)),
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

/// IAM for `action` on `resource` of `bucket`: the bucket's policy (read
/// fresh: another door may have changed it) and the door's endpoint policy.
/// Returns the bucket's policy for the handlers that show it.
fn permit(
    o: &Options,
    store: &Store,
    bucket: Option<&str>,
    action: &str,
    resource: String,
    peer: std::net::IpAddr,
    path: &str,
) -> Result<Option<Policy>, Reply> {
    let policy = match bucket {
        Some(b) => store.policy(b).map_err(|e| {
            tracing::warn!(bucket = b, error = %e, "the bucket's policy cannot be used: denying");
            error(403, "AccessDenied", "Access Denied", path)
        })?,
        None => None,
    };
    let cx = context(o, action, resource, peer);
    if let Err(why) = authorize(o, &cx, policy.as_ref()) {
        let by = match &why {
            Refusal::EndpointPolicy(_) => "the VPC endpoint's policy",
            Refusal::ResourcePolicy(_) => "the bucket's policy",
        };
        tracing::info!(action, peer = %peer, door = ?o.door, ?why, "denied");
        return Err(error(403, "AccessDenied", &format!("Access Denied (by {by})"), path));
    }
    Ok(policy)
}

fn not_implemented(what: &str, path: &str) -> Reply {
    error(501, "NotImplemented", &format!("natgw's S3 does not implement {what}"), path)
}

fn answer(o: &Options, rq: &mut tiny_http::Request) -> Reply {
    let Ok(store) = Store::open(&o.data) else {
        return error(500, "InternalError", "the store's directory is not usable", "");
    };
    let (path, query) = split_url(rq.url());
    if let Some((k, _)) = query.iter().find(|(k, _)| !KNOWN_QUERY.contains(&k.as_str()) && !k.starts_with("X-Amz-")) {
        return not_implemented(&format!("the `{k}` parameter"), &path);
    }
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
        (Get | Head, Some(b), None)
            if query.iter().all(|(k, _)| !["uploads", "uploadId", "partNumber"].contains(&k.as_str())) =>
        {
            ("s3:ListBucket", format!("arn:aws:s3:::{b}"))
        }
        // This store keeps no tags (it refuses requests that set them), so
        // every object's tag set is empty: `aws s3 cp` from s3 to s3 asks.
        (Get, Some(b), Some(k)) if has(&query, "tagging") => ("s3:GetObjectTagging", format!("arn:aws:s3:::{b}/{k}")),
        _ if has(&query, "tagging") || header(rq, "x-amz-tagging").is_some() => {
            return not_implemented("object tags", &path);
        }
        (Get | Head, Some(b), Some(k)) if !has(&query, "uploadId") && !has(&query, "uploads") => {
            ("s3:GetObject", format!("arn:aws:s3:::{b}/{k}"))
        }
        (Put | Post, Some(b), Some(k)) => ("s3:PutObject", format!("arn:aws:s3:::{b}/{k}")),
        (Delete, Some(b), Some(k)) if has(&query, "uploadId") => {
            ("s3:AbortMultipartUpload", format!("arn:aws:s3:::{b}/{k}"))
        }
        (Delete, Some(b), Some(k)) => ("s3:DeleteObject", format!("arn:aws:s3:::{b}/{k}")),
        _ => return not_implemented("this request", &path),
    };
    let dir = match &t.bucket {
        Some(b) => match store.bucket_dir(b) {
            Some(d) => Some(d),
            None => return error(404, "NoSuchBucket", "The specified bucket does not exist", b),
        },
        None => None,
    };
    let bucket = t.bucket.as_deref().unwrap_or("");
    let policy = match permit(o, &store, t.bucket.as_deref(), action, resource, peer, &path) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(dir) = dir else { return list_buckets(&store) };
    // A copy reads its source: s3:GetObject there, under that bucket's policy.
    let source = match (&method, header(rq, "x-amz-copy-source")) {
        (Put, Some(h)) => {
            let (sb, sk) = match copy_source(h) {
                Ok(s) => s,
                Err(r) => return r,
            };
            let Some(sdir) = store.bucket_dir(&sb) else {
                return error(404, "NoSuchBucket", "The specified bucket does not exist", &sb);
            };
            let arn = format!("arn:aws:s3:::{sb}/{sk}");
            if let Err(r) = permit(o, &store, Some(&sb), "s3:GetObject", arn, peer, &path) {
                return r;
            }
            Some((sb, sdir, sk))
        }
        _ => None,
    };
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
        (Get, Some(k)) if has(&query, "tagging") => match stored(&store, &dir, &k) {
            Ok(_) => xml(format!("<Tagging xmlns=\"{XMLNS}\"><TagSet></TagSet></Tagging>")),
            Err(r) => r,
        },
        (Get | Head, Some(k)) => get_object(&store, &dir, &k, header(rq, "Range")),
        (Put, Some(k)) => match (q(&query, "partNumber"), q(&query, "uploadId"), source) {
            (Some(n), Some(id), None) => put_part(&store, bucket, &k, n, id, rq),
            (Some(n), Some(id), Some((_, sdir, sk))) => {
                let range = header(rq, "x-amz-copy-source-range").map(str::to_string);
                copy_part(&store, bucket, &k, n, id, &sdir, &sk, range.as_deref())
            }
            (None, None, None) => put_object(&store, &dir, &k, rq),
            (None, None, Some((sb, sdir, sk))) => {
                let replace = header(rq, "x-amz-metadata-directive").is_some_and(|d| d.eq_ignore_ascii_case("REPLACE"));
                let ctype = replace.then(|| header(rq, "Content-Type").unwrap_or("binary/octet-stream").to_string());
                if sb == bucket && sk == k && ctype.is_none() {
                    return error(
                        400,
                        "InvalidRequest",
                        "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata.",
                        &k,
                    );
                }
                copy_object(&store, &sdir, &sk, &dir, &k, ctype)
            }
            _ => error(400, "InvalidArgument", "partNumber and uploadId go together", &k),
        },
        (Post, Some(k)) if has(&query, "uploads") => {
            create_upload(&store, bucket, &k, header(rq, "Content-Type").unwrap_or("binary/octet-stream"))
        }
        (Post, Some(k)) => match q(&query, "uploadId") {
            Some(id) => complete_upload(&store, &dir, bucket, &k, id, rq),
            None => not_implemented("this request", &path),
        },
        (Delete, Some(k)) => match q(&query, "uploadId") {
            Some(id) => match upload(&store, bucket, &k, id) {
                Ok((d, _)) => {
                    let _ = fs::remove_dir_all(d);
                    Reply::empty(204)
                }
                Err(r) => r,
            },
            None => match store.delete(&dir, &k) {
                Ok(()) => Reply::empty(204),
                Err(e) => error(500, "InternalError", &e.to_string(), &k),
            },
        },
        _ => not_implemented("this request", &path),
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

/// S3's `encoding-type=url`: the CLI asks for it so that any key survives
/// XML; botocore decodes with `unquote_plus`, so form encoding it is.
fn encoder(query: &[(String, String)]) -> Result<fn(&str) -> String, Reply> {
    match q(query, "encoding-type") {
        None => Ok(|s: &str| xml_escape(s)),
        Some(e) if e.eq_ignore_ascii_case("url") => {
            Ok(|s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect())
        }
        Some(_) => Err(error(400, "InvalidArgument", "Invalid Encoding Method specified in Request", "encoding-type")),
    }
}

fn list_objects(store: &Store, dir: &Path, bucket: &str, query: &[(String, String)]) -> Reply {
    let enc = match encoder(query) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let v2 = q(query, "list-type") == Some("2");
    let prefix = q(query, "prefix").unwrap_or("");
    let delimiter = q(query, "delimiter").filter(|d| !d.is_empty());
    let max_keys: usize = q(query, "max-keys").and_then(|m| m.parse().ok()).unwrap_or(1000).min(1000);
    // Where to start: v2's continuation token (the last key or common prefix
    // returned, hex) or start-after; v1's marker.
    let token = q(query, "continuation-token");
    let after = if v2 {
        match token {
            Some(t) => match unhex(t) {
                Some(a) => Some(a),
                None => return error(400, "InvalidArgument", "The continuation token provided is incorrect", t),
            },
            None => q(query, "start-after").map(str::to_string),
        }
    } else {
        q(query, "marker").map(str::to_string)
    };
    // A page that ended on a common prefix resumes after every key under it.
    let passed = |key: &str| match &after {
        None => false,
        Some(a) => key <= a.as_str() || delimiter.is_some_and(|d| a.ends_with(d) && key.starts_with(a.as_str())),
    };
    let mut contents = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last = String::new();
    for obj in store.list(dir) {
        if !obj.key.starts_with(prefix) || passed(&obj.key) {
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
        enc(prefix)
    );
    if q(query, "encoding-type").is_some() {
        s.push_str("<EncodingType>url</EncodingType>");
    }
    if let Some(d) = delimiter {
        s.push_str(&format!("<Delimiter>{}</Delimiter>", enc(d)));
    }
    if v2 {
        s.push_str(&format!("<KeyCount>{}</KeyCount>", contents.len() + prefixes.len()));
        if let Some(t) = token {
            s.push_str(&format!("<ContinuationToken>{}</ContinuationToken>", xml_escape(t)));
        }
        if let Some(a) = q(query, "start-after") {
            s.push_str(&format!("<StartAfter>{}</StartAfter>", enc(a)));
        }
        if truncated {
            s.push_str(&format!("<NextContinuationToken>{}</NextContinuationToken>", hex(last.as_bytes())));
        }
    } else {
        s.push_str(&format!("<Marker>{}</Marker>", enc(q(query, "marker").unwrap_or(""))));
        if truncated {
            s.push_str(&format!("<NextMarker>{}</NextMarker>", enc(&last)));
        }
    }
    for o in &contents {
        s.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>&quot;{}&quot;</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            enc(&o.key),
            iso(o.modified),
            o.etag,
            o.size
        ));
    }
    for p in &prefixes {
        s.push_str(&format!("<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>", enc(p)));
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

/// The object, or the reply that says why not.
fn stored(store: &Store, dir: &Path, key: &str) -> Result<Stored, Reply> {
    match store.object(dir, key) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(error(404, "NoSuchKey", "The specified key does not exist.", key)),
        Err(e) => {
            tracing::warn!(error = %e, key, "an object that cannot be read");
            Err(error(500, "InternalError", "the object's file cannot be read", key))
        }
    }
}

fn get_object(store: &Store, dir: &Path, key: &str, range_header: Option<&str>) -> Reply {
    let Stored { trailer, mut file, size, modified } = match stored(store, dir, key) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let base = |status: u16, n: u64, r: Box<dyn Read + Send>| Reply {
        status,
        headers: vec![
            ("Content-Type".into(), trailer.content_type.clone()),
            ("ETag".into(), format!("\"{}\"", trailer.etag)),
            ("Last-Modified".into(), httpdate::fmt_http_date(modified)),
            ("Accept-Ranges".into(), "bytes".into()),
        ],
        body: Body::Reader(r, n as usize),
    };
    match range_header {
        Some(h) => match range(h, size) {
            Some((a, b)) => {
                if file.seek(SeekFrom::Start(a)).is_err() {
                    return error(500, "InternalError", "seek", key);
                }
                base(206, b - a + 1, Box::new(file.take(b - a + 1)))
                    .header("Content-Range", format!("bytes {a}-{b}/{size}"))
            }
            None => error(416, "InvalidRange", "The requested range is not satisfiable", key),
        },
        None => base(200, size, Box::new(file.take(size))),
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

/// CopyObject: the source's bytes under a new key, streamed; its content
/// type unless the request replaces it.
fn copy_object(store: &Store, sdir: &Path, skey: &str, dir: &Path, key: &str, ctype: Option<String>) -> Reply {
    let src = match stored(store, sdir, skey) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ctype = ctype.unwrap_or(src.trailer.content_type);
    let (mut file, size) = (src.file, src.size);
    let r = store.write_object(dir, key, &ctype, |w| {
        let n = std::io::copy(&mut (&mut file).take(size), w)?;
        if n != size {
            return Err(std::io::Error::other("the source ended early"));
        }
        Ok(None)
    });
    match r {
        Ok(etag) => xml(format!(
            "<CopyObjectResult xmlns=\"{XMLNS}\"><LastModified>{}</LastModified><ETag>&quot;{etag}&quot;</ETag></CopyObjectResult>",
            iso(SystemTime::now())
        )),
        Err(e) => error(500, "InternalError", &e.to_string(), key),
    }
}

/// What CreateMultipartUpload recorded of an upload.
#[derive(serde::Serialize, serde::Deserialize)]
struct Upload {
    bucket: String,
    key: String,
    content_type: String,
}

/// An upload's directory and record, if `id` is an upload of this bucket and key.
fn upload(store: &Store, bucket: &str, key: &str, id: &str) -> Result<(PathBuf, Upload), Reply> {
    let none = || error(404, "NoSuchUpload", "The specified upload does not exist.", key);
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(none());
    }
    let d = store.root.join(".uploads").join(id);
    let u: Upload =
        fs::read(d.join("upload.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(none)?;
    if u.bucket != bucket || u.key != key {
        return Err(none());
    }
    Ok((d, u))
}

fn create_upload(store: &Store, bucket: &str, key: &str, content_type: &str) -> Reply {
    let id = hex(&rand::random::<[u8; 16]>());
    let d = store.root.join(".uploads").join(&id);
    let u = Upload { bucket: bucket.to_string(), key: key.to_string(), content_type: content_type.to_string() };
    let made = fs::create_dir_all(&d)
        .and_then(|()| serde_json::to_vec(&u).map_err(std::io::Error::other))
        .and_then(|b| write_atomic(&d.join("upload.json"), &b));
    if let Err(e) = made {
        return error(500, "InternalError", &e.to_string(), key);
    }
    xml(format!(
        "<InitiateMultipartUploadResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>",
        xml_escape(bucket),
        xml_escape(key)
    ))
}

fn part_number(n: &str, key: &str) -> Result<u32, Reply> {
    n.parse::<u32>()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000", key))
}

fn put_part(store: &Store, bucket: &str, key: &str, n: &str, id: &str, rq: &mut tiny_http::Request) -> Reply {
    let (d, n) = match upload(store, bucket, key, id).and_then(|(d, _)| Ok((d, part_number(n, key)?))) {
        Ok(x) => x,
        Err(r) => return r,
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

/// UploadPartCopy: a part from (a range of) another object, as `aws s3 cp`
/// does from s3 to s3 above its multipart threshold.
#[allow(clippy::too_many_arguments)]
fn copy_part(
    store: &Store,
    bucket: &str,
    key: &str,
    n: &str,
    id: &str,
    sdir: &Path,
    skey: &str,
    range_header: Option<&str>,
) -> Reply {
    let (d, n) = match upload(store, bucket, key, id).and_then(|(d, _)| Ok((d, part_number(n, key)?))) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut src = match stored(store, sdir, skey) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (a, b) = match range_header {
        None if src.size == 0 => (0, 0),
        None => (0, src.size - 1),
        Some(h) => match range(h, src.size) {
            Some(r) => r,
            None => {
                return error(
                    400,
                    "InvalidArgument",
                    "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
                    skey,
                );
            }
        },
    };
    let len = if src.size == 0 { 0 } else { b - a + 1 };
    if len > MAX_PUT as u64 {
        return error(400, "EntityTooLarge", &format!("a part of more than {MAX_PUT} bytes"), key);
    }
    let mut data = Vec::with_capacity(len as usize);
    let read = src.file.seek(SeekFrom::Start(a)).and_then(|_| (&mut src.file).take(len).read_to_end(&mut data));
    if read.is_err() || data.len() as u64 != len {
        return error(500, "InternalError", "the source object cannot be read", skey);
    }
    let etag = hex(&Md5::digest(&data));
    match write_atomic(&d.join(format!("{n:05}")), &data) {
        Ok(()) => xml(format!(
            "<CopyPartResult xmlns=\"{XMLNS}\"><LastModified>{}</LastModified><ETag>&quot;{etag}&quot;</ETag></CopyPartResult>",
            iso(SystemTime::now())
        )),
        Err(e) => error(500, "InternalError", &e.to_string(), key),
    }
}

/// The part numbers a CompleteMultipartUpload body lists, in order.
fn listed_parts(xml: &str) -> Vec<u32> {
    xml.split("<PartNumber>").skip(1).filter_map(|s| s.split("</PartNumber>").next()?.trim().parse().ok()).collect()
}

fn complete_upload(store: &Store, dir: &Path, bucket: &str, key: &str, id: &str, rq: &mut tiny_http::Request) -> Reply {
    let (d, u) = match upload(store, bucket, key, id) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let listed = match body(rq, MAX_SMALL) {
        Ok(b) => listed_parts(&String::from_utf8_lossy(&b)),
        Err(e) => return error(400, "MalformedXML", &e, key),
    };
    if listed.is_empty() || listed.windows(2).any(|w| w[0] >= w[1]) {
        return error(400, "InvalidPartOrder", "The list of parts was not in ascending order.", key);
    }
    if let Some(n) = listed.iter().find(|n| !d.join(format!("{n:05}")).is_file()) {
        return error(400, "InvalidPart", &format!("part {n} was not uploaded"), key);
    }
    // The parts, streamed into the object; its ETag is the MD5 of their MD5s.
    let r = store.write_object(dir, key, &u.content_type, |w| {
        let mut digests = Vec::new();
        for n in &listed {
            let mut part = Hashing { inner: &mut *w, md5: Md5::new() };
            std::io::copy(&mut fs::File::open(d.join(format!("{n:05}")))?, &mut part)?;
            digests.extend_from_slice(&part.md5.finalize());
        }
        Ok(Some(format!("{}-{}", hex(&Md5::digest(&digests)), listed.len())))
    });
    let etag = match r {
        Ok(e) => e,
        Err(e) => return error(500, "InternalError", &e.to_string(), key),
    };
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
    fn interface_endpoint_names_are_not_buckets() {
        let h = "vpce-0a1b2c3d-4e5f.s3.ap-northeast-2.vpce.amazonaws.com";
        let t = target(Some(h), "/lab-bucket/k");
        assert_eq!((t.bucket.as_deref(), t.key.as_deref()), (Some("lab-bucket"), Some("k")));
        let t = target(Some(&format!("lab-bucket.{h}")), "/k");
        assert_eq!((t.bucket.as_deref(), t.key.as_deref()), (Some("lab-bucket"), Some("k")));
        let t = target(Some(&format!("bucket.vpce-0a1b2c3d-4e5f.{h}")), "/k");
        assert_eq!(t.bucket.as_deref(), Some("bucket.vpce-0a1b2c3d-4e5f"), "only the label before .s3. is the id");
        // Off the vpce domain a bucket may be called vpce-anything.
        let t = target(Some("vpce-logs.s3.ap-northeast-2.amazonaws.com"), "/k");
        assert_eq!(t.bucket.as_deref(), Some("vpce-logs"));
        assert_eq!(copy_source("/src-bucket/a%20b/c.txt").ok(), Some(("src-bucket".into(), "a b/c.txt".into())));
        assert_eq!(copy_source("src-bucket/k").ok(), Some(("src-bucket".into(), "k".into())));
        assert_eq!(copy_source("src-bucket/k?versionId=1").err().map(|r| r.status), Some(501));
        assert_eq!(copy_source("src-bucket").err().map(|r| r.status), Some(400));
    }

    fn scratch(name: &str) -> (PathBuf, Store, PathBuf) {
        let d = std::env::temp_dir().join(format!("natgw-s3-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let store = Store::open(&d).expect("open");
        store.create_bucket("lab-bucket").expect("bucket");
        let dir = store.bucket_dir("lab-bucket").expect("dir");
        (d, store, dir)
    }

    fn text(r: Reply) -> String {
        match r.body {
            Body::Bytes(b) => String::from_utf8(b).expect("utf-8"),
            _ => String::new(),
        }
    }

    #[test]
    fn an_object_is_one_file_with_its_key_and_etag() {
        let (d, store, dir) = scratch("objects");
        let long = "k/".repeat(500);
        for k in ["a", "dir/sub/file.txt", "한글 키", "../../etc/passwd", long.as_str()] {
            let etag = store.put(&dir, k, k.as_bytes(), "text/plain").expect("put");
            assert_eq!(etag, hex(&Md5::digest(k.as_bytes())));
            let mut s = store.object(&dir, k).expect("read").expect("there");
            assert_eq!(
                (s.trailer.key.as_str(), s.size, s.trailer.content_type.as_str()),
                (k, k.len() as u64, "text/plain")
            );
            let mut back = Vec::new();
            (&mut s.file).take(s.size).read_to_end(&mut back).expect("bytes");
            assert_eq!(back, k.as_bytes());
        }
        let names: Vec<String> =
            fs::read_dir(&dir).expect("dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 5, "one file per object, no temporaries left: {names:?}");
        assert!(names.iter().all(|n| is_object_name(n)));
        assert_eq!(store.list(&dir).iter().map(|o| o.key.len()).max(), Some(1000));
        // An empty object, and one that a crash cut short: the first lists,
        // the second is an error to read and left out of listings.
        store.put(&dir, "empty", b"", "binary/octet-stream").expect("put");
        assert_eq!(store.object(&dir, "empty").expect("read").map(|s| s.size), Some(0));
        fs::write(dir.join(object_name("torn")), b"half an obj").expect("torn");
        assert!(store.object(&dir, "torn").is_err());
        assert_eq!(store.list(&dir).len(), 6);
        store.delete(&dir, "a").expect("delete");
        assert!(store.object(&dir, "a").expect("read").is_none());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn copies_keep_the_bytes_and_the_type() {
        let (d, store, dir) = scratch("copy");
        store.put(&dir, "src", b"hello, copy", "text/plain").expect("put");
        let r = copy_object(&store, &dir, "src", &dir, "dst", None);
        assert_eq!(r.status, 200);
        let body = text(r);
        assert!(body.contains("<CopyObjectResult") && body.contains(&hex(&Md5::digest(b"hello, copy"))), "{body}");
        let s = store.object(&dir, "dst").expect("read").expect("copied");
        assert_eq!((s.size, s.trailer.content_type.as_str()), (11, "text/plain"));
        assert_eq!(copy_object(&store, &dir, "dst", &dir, "typed", Some("image/png".into())).status, 200);
        assert_eq!(store.object(&dir, "typed").expect("read").expect("there").trailer.content_type, "image/png");
        assert_eq!(copy_object(&store, &dir, "missing", &dir, "x", None).status, 404);
        let _ = fs::remove_dir_all(&d);
    }

    fn listing(store: &Store, dir: &Path, q: &[(&str, &str)]) -> String {
        let q: Vec<(String, String)> = q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        text(list_objects(store, dir, "lab-bucket", &q))
    }

    fn between<'a>(s: &'a str, open: &str, close: &str) -> Vec<&'a str> {
        s.split(open).skip(1).filter_map(|x| x.split(close).next()).collect()
    }

    #[test]
    fn listing_pages_past_common_prefixes() {
        let (d, store, dir) = scratch("list");
        for k in ["a/1", "a/2", "a/3", "b", "c/1", "c/2", "d"] {
            store.put(&dir, k, b"x", "text/plain").expect("put");
        }
        // Page by two with a delimiter: every entry once, in order.
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..10 {
            let mut q = vec![("list-type", "2"), ("delimiter", "/"), ("max-keys", "2")];
            if let Some(t) = &token {
                q.push(("continuation-token", t));
            }
            let s = listing(&store, &dir, &q);
            seen.extend(between(&s, "<Key>", "</Key>").into_iter().map(str::to_string));
            seen.extend(between(&s, "<CommonPrefixes><Prefix>", "</Prefix>").into_iter().map(str::to_string));
            token = between(&s, "<NextContinuationToken>", "<").first().map(|t| t.to_string());
            if token.is_none() {
                break;
            }
        }
        // Each page lists its keys, then its common prefixes.
        assert_eq!(seen, ["b", "a/", "d", "c/"]);
        // v1 with a marker that is a common prefix.
        let s = listing(&store, &dir, &[("delimiter", "/"), ("marker", "a/")]);
        assert_eq!(between(&s, "<Key>", "</Key>"), ["b", "d"]);
        assert_eq!(between(&s, "<CommonPrefixes><Prefix>", "</Prefix>"), ["c/"]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn url_encoding_as_the_cli_asks() {
        let (d, store, dir) = scratch("encoding");
        store.put(&dir, "a b+c&<d>.txt", b"x", "text/plain").expect("put");
        let s = listing(&store, &dir, &[("list-type", "2"), ("encoding-type", "url")]);
        assert!(s.contains("<EncodingType>url</EncodingType>"), "{s}");
        assert_eq!(between(&s, "<Key>", "</Key>"), ["a+b%2Bc%26%3Cd%3E.txt"]);
        let s = listing(&store, &dir, &[("list-type", "2")]);
        assert_eq!(between(&s, "<Key>", "</Key>"), ["a b+c&amp;&lt;d&gt;.txt"]);
        let q = vec![("encoding-type".to_string(), "base64".to_string())];
        assert_eq!(list_objects(&store, &dir, "lab-bucket", &q).status, 400);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_policy_that_cannot_be_read_denies() {
        let (d, store, _) = scratch("policy");
        assert!(matches!(store.policy("lab-bucket"), Ok(None)));
        // A directory where the file should be: unreadable, so an error, never "no policy".
        fs::create_dir_all(store.policy_path("lab-bucket")).expect("dir");
        assert!(store.policy("lab-bucket").is_err());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn multipart_parts_and_tokens() {
        assert_eq!(
            listed_parts("<P><Part><PartNumber>1</PartNumber></Part><Part><PartNumber> 2 </PartNumber></Part></P>"),
            vec![1, 2]
        );
        assert!(
            bucket_name_ok("lab-bucket") && !bucket_name_ok("Lab") && !bucket_name_ok("ab") && !bucket_name_ok("..")
        );
        assert_eq!(unhex(&hex("c/".as_bytes())).as_deref(), Some("c/"));
    }
}
