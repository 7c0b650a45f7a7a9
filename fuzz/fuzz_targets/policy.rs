//! IAM policies (bucket and endpoint policies) on arbitrary text: refused
//! with a reason, or parsed and then evaluated against requests from the
//! internet and through an endpoint; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use natgw::services::policy::{Decision, Policy, RequestContext, glob};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Wildcards on arbitrary patterns and subjects.
    let mid = text.char_indices().map(|(i, _)| i).nth(text.chars().count() / 2).unwrap_or(text.len());
    let (p, s) = text.split_at(mid);
    let _ = glob(p, s, true);
    let Ok(policy) = Policy::parse(text) else { return };
    for keys in [
        vec![("aws:sourceip", "203.0.113.5")],
        vec![("aws:sourcevpce", "vpce-1a2b3c4d"), ("aws:sourcevpc", "vpc-0a1b2c3d"), ("aws:vpcsourceip", "10.0.1.10")],
    ] {
        let rq = RequestContext {
            action: "s3:GetObject".into(),
            resource: "arn:aws:s3:::lab-bucket/a/b".into(),
            principal: "arn:aws:iam::123456789012:root".into(),
            keys: keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        match policy.evaluate(&rq) {
            Decision::Allow(_) | Decision::Deny(_) | Decision::NoMatch => {}
        }
    }
});
