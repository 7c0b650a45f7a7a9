//! What the services share of HTTP: replies, bodies, query strings.

use std::io::Read;

/// A reply to one request.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// A reply's body.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// A reader and its length (an object, or a range of it).
    Reader(Box<dyn Read + Send>, usize),
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply { status, headers: vec![("Content-Type".into(), content_type.into())], body: Body::Bytes(body) }
    }

    pub fn empty(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Body::Empty }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sends it.
    pub fn send(self, rq: tiny_http::Request) -> std::io::Result<()> {
        let mut headers: Vec<tiny_http::Header> = self
            .headers
            .iter()
            .filter_map(|(k, v)| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok())
            .collect();
        if let Ok(h) = tiny_http::Header::from_bytes(&b"x-amz-request-id"[..], &b"NATGWLAB"[..]) {
            headers.push(h);
        }
        let status = tiny_http::StatusCode(self.status);
        let (reader, len): (Box<dyn Read + Send>, usize) = match self.body {
            Body::Empty => (Box::new(std::io::empty()), 0),
            Body::Bytes(b) => {
                let n = b.len();
                (Box::new(std::io::Cursor::new(b)), n)
            }
            Body::Reader(r, n) => (r, n),
        };
        // For HEAD, tiny_http sends the headers (with the length a GET would
        // have) and no body.
        // Always a Content-Length (tiny_http would chunk bodies over 32 KiB;
        // S3 clients expect the length, also of a HEAD).
        rq.respond(
            tiny_http::Response::new(status, headers, reader, Some(len), None).with_chunked_threshold(usize::MAX),
        )
    }
}

/// Reads a request body of at most `limit` bytes.
pub fn body(rq: &mut tiny_http::Request, limit: usize) -> Result<Vec<u8>, String> {
    if rq.body_length().is_some_and(|n| n > limit) {
        return Err(format!("a body of more than {limit} bytes"));
    }
    let mut v = Vec::new();
    rq.as_reader().take(limit as u64 + 1).read_to_end(&mut v).map_err(|e| e.to_string())?;
    if v.len() > limit {
        return Err(format!("a body of more than {limit} bytes"));
    }
    Ok(v)
}

/// The path (percent-decoded) and the query pairs of a request URL.
pub fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned();
    let query = form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    (path, query)
}

/// A request header's value.
pub fn header<'a>(rq: &'a tiny_http::Request, name: &str) -> Option<&'a str> {
    rq.headers().iter().find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

/// Escapes text for XML.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
