//! IAM resource policies (S3 bucket policies, VPC endpoint policies): the
//! JSON grammar and IAM's evaluation, for the few keys a lab can know.
//!
//! Supported: `Effect`, `Principal` / `NotPrincipal` (`*`, `{"AWS": ...}`),
//! `Action` / `NotAction` and `Resource` / `NotResource` with `*` and `?`
//! wildcards, and `Condition` with `StringEquals`, `StringNotEquals`,
//! `StringLike`, `StringNotLike`, `StringEqualsIgnoreCase`,
//! `StringNotEqualsIgnoreCase`, `IpAddress`, `NotIpAddress`, `Bool`, each
//! with `...IfExists`, on the keys a lab request carries (`KEYS`). Anything
//! else is refused when the policy is read (as S3 refuses a malformed
//! policy), never ignored.
//!
//! IAM's absent-key rule: a condition on a key the request does not carry is
//! false, except for the negated operators (`StringNotEquals`,
//! `StringNotLike`, `NotIpAddress`, ...), for which it is true, and for
//! `...IfExists`, which is true. A request through a VPC endpoint carries
//! `aws:SourceVpce`, `aws:SourceVpc` and `aws:VpcSourceIp` and no
//! `aws:SourceIp`; one from the internet carries `aws:SourceIp` only.

use crate::route::Prefix;
use serde_json::Value;
use std::net::Ipv4Addr;

/// The condition keys a lab request can carry (lower case), and as IAM
/// spells them. A policy naming any other key is refused: the lab could not
/// say whether it holds, and IAM's absent-key rule would silently decide.
const KEYS: [&str; 7] = [
    "aws:securetransport",
    "aws:sourceip",
    "aws:sourcevpce",
    "aws:sourcevpc",
    "aws:vpcsourceip",
    "aws:principalaccount",
    "aws:principalarn",
];
const KEY_NAMES: [&str; 7] = [
    "aws:SecureTransport",
    "aws:SourceIp",
    "aws:SourceVpce",
    "aws:SourceVpc",
    "aws:VpcSourceIp",
    "aws:PrincipalAccount",
    "aws:PrincipalArn",
];

/// Allow or Deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringLike,
    StringEqualsIgnoreCase,
    IpAddress,
    Bool,
}

#[derive(Clone, Debug)]
struct Condition {
    op: Op,
    /// StringNotEquals, NotIpAddress, ...
    negated: bool,
    if_exists: bool,
    /// Lower case (IAM keys are case-insensitive).
    key: String,
    values: Vec<String>,
}

#[derive(Clone, Debug)]
struct Statement {
    sid: Option<String>,
    effect: Effect,
    /// None: no principal element (endpoint policies may omit it).
    principal: Option<(bool, Vec<String>)>,
    actions: (bool, Vec<String>),
    resources: (bool, Vec<String>),
    conditions: Vec<Condition>,
}

/// A parsed policy.
#[derive(Clone, Debug)]
pub struct Policy {
    statements: Vec<Statement>,
    /// The JSON as given (GetBucketPolicy returns it).
    pub text: String,
}

/// What a request is, for the policy.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// e.g. `s3:GetObject`.
    pub action: String,
    /// e.g. `arn:aws:s3:::bucket/key`.
    pub resource: String,
    /// The caller (we treat every request as the bucket owner's account).
    pub principal: String,
    /// Condition keys, lower case, with their values.
    pub keys: Vec<(String, String)>,
}

impl RequestContext {
    fn get(&self, key: &str) -> Option<&str> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The outcome of evaluating one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A statement allowed it (its Sid, or its index).
    Allow(String),
    /// A statement denied it.
    Deny(String),
    /// No statement matched.
    NoMatch,
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(format!("{what}: every value must be a string")),
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        _ => Err(format!("{what} must be a string or a list of strings")),
    }
}

fn principal(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) if s == "*" => Ok(vec!["*".into()]),
        Value::Object(m) => {
            let mut out = Vec::new();
            for (k, v) in m {
                if k != "AWS" && k != "Service" {
                    return Err(format!("Principal type `{k}` is not supported (use \"*\" or {{\"AWS\": ...}})"));
                }
                out.extend(strings(v, "Principal")?);
            }
            Ok(out)
        }
        _ => Err("Principal must be \"*\" or {\"AWS\": ...}".into()),
    }
}

fn operator(name: &str) -> Result<(Op, bool, bool), String> {
    let (base, if_exists) = match name.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let (op, negated) = match base {
        "StringEquals" => (Op::StringEquals, false),
        "StringNotEquals" => (Op::StringEquals, true),
        "StringLike" => (Op::StringLike, false),
        "StringNotLike" => (Op::StringLike, true),
        "StringEqualsIgnoreCase" => (Op::StringEqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (Op::StringEqualsIgnoreCase, true),
        "IpAddress" => (Op::IpAddress, false),
        "NotIpAddress" => (Op::IpAddress, true),
        "Bool" => (Op::Bool, false),
        _ => {
            return Err(format!(
                "condition operator `{name}` is not supported here (StringEquals, StringNotEquals, StringLike, StringNotLike, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, IpAddress, NotIpAddress, Bool, each also ...IfExists)"
            ));
        }
    };
    Ok((op, negated, if_exists))
}

fn pair<'a>(m: &'a serde_json::Map<String, Value>, yes: &str, no: &str) -> Result<Option<(bool, &'a Value)>, String> {
    match (m.get(yes), m.get(no)) {
        (Some(_), Some(_)) => Err(format!("a statement has both {yes} and {no}")),
        (Some(v), None) => Ok(Some((false, v))),
        (None, Some(v)) => Ok(Some((true, v))),
        (None, None) => Ok(None),
    }
}

impl Policy {
    /// Parses a policy, refusing what IAM would refuse or we cannot honour.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(top) = &v else { return Err("a policy is a JSON object".into()) };
        for k in top.keys() {
            if !["Version", "Id", "Statement"].contains(&k.as_str()) {
                return Err(format!("unknown top-level element `{k}`"));
            }
        }
        let list = match top.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            _ => return Err("a policy needs a Statement".into()),
        };
        let mut statements = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let Value::Object(m) = s else { return Err(format!("statement {i} is not an object")) };
            for k in m.keys() {
                if ![
                    "Sid",
                    "Effect",
                    "Principal",
                    "NotPrincipal",
                    "Action",
                    "NotAction",
                    "Resource",
                    "NotResource",
                    "Condition",
                ]
                .contains(&k.as_str())
                {
                    return Err(format!("statement {i}: unknown element `{k}`"));
                }
            }
            let effect = match m.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                _ => return Err(format!("statement {i}: Effect must be \"Allow\" or \"Deny\"")),
            };
            let principal =
                pair(m, "Principal", "NotPrincipal")?.map(|(n, v)| principal(v).map(|p| (n, p))).transpose()?;
            let actions = match pair(m, "Action", "NotAction")? {
                Some((n, v)) => (n, strings(v, "Action")?),
                None => return Err(format!("statement {i}: needs an Action")),
            };
            let resources = match pair(m, "Resource", "NotResource")? {
                Some((n, v)) => (n, strings(v, "Resource")?),
                None => (false, vec!["*".into()]),
            };
            let mut conditions = Vec::new();
            if let Some(c) = m.get("Condition") {
                let Value::Object(ops) = c else { return Err(format!("statement {i}: Condition is an object")) };
                for (name, kv) in ops {
                    let (op, negated, if_exists) = operator(name)?;
                    let Value::Object(kv) = kv else { return Err(format!("statement {i}: {name} takes an object")) };
                    for (key, values) in kv {
                        let lower = key.to_ascii_lowercase();
                        if !KEYS.contains(&lower.as_str()) {
                            return Err(format!(
                                "statement {i}: condition key `{key}` is not one the lab's requests carry, so a condition on it could never be judged (use {})",
                                KEY_NAMES.join(", ")
                            ));
                        }
                        let values = strings(values, name)?;
                        if op == Op::IpAddress {
                            for v in &values {
                                parse_cidr(v).ok_or_else(|| format!("`{v}` is not an IPv4 address or CIDR"))?;
                            }
                        }
                        conditions.push(Condition { op, negated, if_exists, key: key.to_ascii_lowercase(), values });
                    }
                }
            }
            statements.push(Statement {
                sid: m.get("Sid").and_then(Value::as_str).map(str::to_string),
                effect,
                principal,
                actions,
                resources,
                conditions,
            });
        }
        Ok(Policy { statements, text: text.to_string() })
    }

    /// An endpoint's default policy: full access.
    pub fn allow_all() -> Policy {
        Policy::parse(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#)
            .expect("the default endpoint policy")
    }

    /// IAM's evaluation of this one policy: an explicit Deny wins, then an Allow.
    pub fn evaluate(&self, rq: &RequestContext) -> Decision {
        let mut allow = None;
        for (i, s) in self.statements.iter().enumerate() {
            if !s.matches(rq) {
                continue;
            }
            let name = s.sid.clone().unwrap_or_else(|| format!("statement {i}"));
            match s.effect {
                Effect::Deny => return Decision::Deny(name),
                Effect::Allow => {
                    allow.get_or_insert(name);
                }
            }
        }
        allow.map_or(Decision::NoMatch, Decision::Allow)
    }
}

fn parse_cidr(s: &str) -> Option<Prefix> {
    if s.contains('/') {
        let (a, l) = s.split_once('/')?;
        let a: Ipv4Addr = a.parse().ok()?;
        let l: u8 = l.parse().ok()?;
        (l <= 32).then(|| Prefix::new(a, l))
    } else {
        Some(Prefix::host(s.parse().ok()?))
    }
}

/// IAM's wildcard match: `*` any run, `?` one character.
pub fn glob(pattern: &str, s: &str, ignore_case: bool) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = if ignore_case {
        (pattern.to_lowercase().chars().collect(), s.to_lowercase().chars().collect())
    } else {
        (pattern.chars().collect(), s.chars().collect())
    };
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Statement {
    fn matches(&self, rq: &RequestContext) -> bool {
        if let Some((negated, ps)) = &self.principal {
            let hit = ps.iter().any(|p| p == "*" || p == &rq.principal || rq.principal.contains(p.as_str()));
            if hit == *negated {
                return false;
            }
        }
        let (negated, acts) = &self.actions;
        if acts.iter().any(|a| glob(a, &rq.action, true)) == *negated {
            return false;
        }
        let (negated, res) = &self.resources;
        if res.iter().any(|r| glob(r, &rq.resource, false)) == *negated {
            return false;
        }
        self.conditions.iter().all(|c| c.holds(rq))
    }
}

impl Condition {
    fn holds(&self, rq: &RequestContext) -> bool {
        let Some(value) = rq.get(&self.key) else {
            // IAM: an absent key satisfies only the negated operators and ...IfExists.
            return self.if_exists || self.negated;
        };
        let any = self.values.iter().any(|want| match self.op {
            Op::StringEquals => want == value,
            Op::StringEqualsIgnoreCase => want.eq_ignore_ascii_case(value),
            Op::StringLike => glob(want, value, false),
            Op::Bool => want.eq_ignore_ascii_case(value),
            Op::IpAddress => match (parse_cidr(want), value.parse::<Ipv4Addr>()) {
                (Some(p), Ok(ip)) => p.contains(ip),
                _ => false,
            },
        });
        any != self.negated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rq(action: &str, resource: &str, keys: &[(&str, &str)]) -> RequestContext {
        RequestContext {
            action: action.into(),
            resource: resource.into(),
            principal: "arn:aws:iam::123456789012:root".into(),
            keys: keys.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect(),
        }
    }

    /// The study notes' policy: deny unless the request came through vpce-1a2b3c4d.
    const NOTES: &str = r#"{
      "Version": "2012-10-17",
      "Statement": [{
        "Sid": "Access-to-specific-VPCE-only",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::lab-bucket", "arn:aws:s3:::lab-bucket/*"],
        "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}}
      }]
    }"#;

    #[test]
    fn the_notes_policy_admits_only_the_listed_endpoint() {
        let p = Policy::parse(NOTES).expect("parses");
        let obj = "arn:aws:s3:::lab-bucket/notes.txt";
        let through =
            |vpce: &str| rq("s3:GetObject", obj, &[("aws:SourceVpce", vpce), ("aws:VpcSourceIp", "10.0.1.10")]);
        assert_eq!(p.evaluate(&through("vpce-1a2b3c4d")), Decision::NoMatch);
        assert_eq!(p.evaluate(&through("vpce-99999999")), Decision::Deny("Access-to-specific-VPCE-only".into()));
        // From the internet the key is absent: StringNotEquals holds, so denied.
        let internet = rq("s3:GetObject", obj, &[("aws:SourceIp", "203.0.113.5")]);
        assert!(matches!(p.evaluate(&internet), Decision::Deny(_)));
        // Another bucket is not covered.
        let other = rq("s3:GetObject", "arn:aws:s3:::other/x", &[("aws:SourceIp", "203.0.113.5")]);
        assert_eq!(p.evaluate(&other), Decision::NoMatch);
    }

    #[test]
    fn absent_keys_follow_iams_rule() {
        let pol = |op: &str, key: &str, val: &str| {
            Policy::parse(&format!(
                r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":{{"{op}":{{"{key}":"{val}"}}}}}}]}}"#
            ))
            .expect("parses")
        };
        let through_endpoint =
            rq("s3:ListBucket", "arn:aws:s3:::b", &[("aws:SourceVpce", "vpce-1"), ("aws:VpcSourceIp", "10.0.1.10")]);
        // aws:SourceIp is absent through an endpoint.
        assert_eq!(pol("IpAddress", "aws:SourceIp", "0.0.0.0/0").evaluate(&through_endpoint), Decision::NoMatch);
        assert!(matches!(
            pol("NotIpAddress", "aws:SourceIp", "0.0.0.0/0").evaluate(&through_endpoint),
            Decision::Allow(_)
        ));
        assert!(matches!(
            pol("IpAddressIfExists", "aws:SourceIp", "192.0.2.0/24").evaluate(&through_endpoint),
            Decision::Allow(_)
        ));
        assert_eq!(pol("StringEquals", "aws:SourceVpc", "vpc-1").evaluate(&through_endpoint), Decision::NoMatch);
        assert!(matches!(
            pol("StringNotEquals", "aws:SourceVpc", "vpc-1").evaluate(&through_endpoint),
            Decision::Allow(_)
        ));
        // Present keys compare; keys are case-insensitive.
        assert!(matches!(
            pol("IpAddress", "AWS:VpcSourceIp", "10.0.1.0/24").evaluate(&through_endpoint),
            Decision::Allow(_)
        ));
        assert!(matches!(
            pol("StringLike", "aws:sourcevpce", "vpce-*").evaluate(&through_endpoint),
            Decision::Allow(_)
        ));
        assert_eq!(pol("IpAddress", "aws:VpcSourceIp", "10.0.2.0/24").evaluate(&through_endpoint), Decision::NoMatch);
    }

    #[test]
    fn actions_and_resources_match_with_wildcards() {
        let p = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":["s3:Get*","s3:ListBucket"],"Resource":"arn:aws:s3:::one/*"}]}"#,
        )
        .expect("parses");
        assert!(matches!(p.evaluate(&rq("s3:GetObject", "arn:aws:s3:::one/a/b", &[])), Decision::Allow(_)));
        assert!(matches!(p.evaluate(&rq("S3:GETOBJECT", "arn:aws:s3:::one/a", &[])), Decision::Allow(_)));
        assert_eq!(p.evaluate(&rq("s3:PutObject", "arn:aws:s3:::one/a", &[])), Decision::NoMatch);
        assert_eq!(p.evaluate(&rq("s3:GetObject", "arn:aws:s3:::two/a", &[])), Decision::NoMatch);
        assert!(glob("a?c*", "abcdef", false));
        assert!(!glob("a?c", "abcd", false));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        for bad in [
            "not json",
            "[]",
            r#"{"Statement":[{"Effect":"Maybe","Action":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020"}}}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Condition":{"IpAddress":{"aws:SourceIp":"not-an-ip"}}}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","NotResource":"*"}]}"#,
            r#"{"Statement":[],"Extra":1}"#,
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Condition":{"StringNotEquals":{"s3:prefix":"home/"}}}]}"#,
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-1"}}}]}"#,
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        let e = Policy::parse(
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Condition":{"StringNotEquals":{"s3:prefix":"home/"}}}]}"#,
        )
        .expect_err("an unknown key");
        assert!(e.contains("`s3:prefix`") && e.contains("aws:SourceVpce"), "{e}");
        let p = Policy::parse(
            r#"{"Statement":[{"Effect":"Deny","Action":"*","Condition":{"StringNotEquals":{"aws:PrincipalAccount":"123456789012"}}}]}"#,
        )
        .expect("a key the lab carries");
        let own = rq("s3:GetObject", "arn:aws:s3:::b/k", &[("aws:PrincipalAccount", "123456789012")]);
        assert_eq!(p.evaluate(&own), Decision::NoMatch);
    }
}
