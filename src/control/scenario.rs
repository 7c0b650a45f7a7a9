//! `natgw lab scenario`: the study notes' experiments, each one command that
//! builds its lab (examples/scenarios/NAME.toml), runs real tools in it,
//! shows what `natgw trace` predicted next to what the traffic then did,
//! checks both, and tears the lab down (also on failure or Ctrl-C).

use super::demo::{Demo, DemoError, indent};
use super::lab::{self, LabState, UpOptions};
use super::socket::{Reply, Request};
use super::trace::{self, Query};
use crate::io::netns;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// One step of a scenario.
enum Step {
    /// A sentence for the reader.
    Say(&'static str),
    /// Start a server in a host (`{dir}` in an argument: the lab's directory),
    /// and wait until it listens on this TCP port.
    Serve { host: &'static str, argv: &'static [&'static str], port: u16 },
    /// A directory a daemon insists on (sshd's privilege separation
    /// directory, which Debian's service would make): made if missing, kept.
    MkDir(&'static str),
    /// Write a file into the lab's directory (`{dir}` replaced).
    File { name: &'static str, text: &'static str },
    /// Run a command in a host: it must succeed (or fail), and its output
    /// contain `want` either way.
    Run { host: &'static str, argv: &'static [&'static str], ok: bool, want: &'static str, what: &'static str },
    /// `curl URL` in a host (2 s at most; the body and then the status code
    /// are its output): like `Run`.
    Curl { host: &'static str, url: &'static str, ok: bool, want: &'static str, what: &'static str },
    /// `natgw trace SRC DST PROTO PORT` against the running lab: the
    /// request's and the reply's verdicts start with these, and some hop
    /// says `hop`.
    Trace {
        q: (&'static str, &'static str, &'static str, Option<u16>),
        request: &'static str,
        reply: Option<&'static str>,
        hop: &'static str,
    },
    /// Edit the lab's file (replace `from` by `to`) and `natgw reload` it.
    Reload { from: &'static str, to: &'static str, what: &'static str },
    /// A drop counter of `natgw stats` is above zero.
    Dropped { reason: &'static str, what: &'static str },
    /// `natgw ARGV --lab NAME` (a command against the running gateway): it
    /// must succeed (or fail), its output contain `want` either way.
    Natgw { argv: &'static [&'static str], ok: bool, want: &'static str, what: &'static str },
}

/// A scenario.
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    config: &'static str,
    steps: &'static [Step],
}

const WEB_HTTP: &[&str] = &["python3", "-m", "http.server", "80", "--bind", "198.51.100.10", "--directory", "/etc"];
const WEB_PAGE: &str = "http://198.51.100.10/hostname";
const PING_WEB: &[&str] = &["ping", "-c", "1", "-W", "1", "198.51.100.10"];

/// Every scenario.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "nacl-ephemeral",
        title: "a network ACL that forgot the ephemeral range: the request passes, the reply dies at rule *",
        config: include_str!("../../examples/scenarios/nacl-ephemeral.toml"),
        steps: &[
            Step::Say("The private subnet's ACL admits SSH from the VPC only. app asks web for a page."),
            Step::Serve { host: "web", argv: WEB_HTTP, port: 80 },
            Step::Trace {
                q: ("app", "198.51.100.10", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("dropped (acl_deny)"),
                hop: "private-acl (subnet private) inbound: rule * deny",
            },
            Step::Curl {
                host: "app",
                url: WEB_PAGE,
                ok: false,
                want: "",
                what: "curl gets no answer: the reply died where the trace said",
            },
            Step::Dropped { reason: "acl_deny", what: "natgw stats counted the reply at the ACL" },
            Step::Reload {
                from: "ports = \"22\" },",
                to: "ports = \"22\" },\n  { rule = 200, action = \"allow\", protocol = \"tcp\", cidr = \"0.0.0.0/0\", ports = \"1024-65535\" },",
                what: "the fix: admit the ephemeral range 1024-65535, as AWS advises",
            },
            Step::Trace {
                q: ("app", "198.51.100.10", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "private-acl (subnet private) inbound: rule 200 allow",
            },
            Step::Curl { host: "app", url: WEB_PAGE, ok: true, want: "HTTP 200", what: "curl gets its page" },
        ],
    },
    Scenario {
        name: "group-reference",
        title: "a backend group that admits only the frontend group's members",
        config: include_str!("../../examples/scenarios/group-reference.toml"),
        steps: &[
            Step::Say("api (backend-sg) admits TCP 8080 from members of frontend-sg, whatever their addresses."),
            Step::Serve {
                host: "api",
                argv: &["python3", "-m", "http.server", "8080", "--bind", "10.0.1.20", "--directory", "/etc"],
                port: 8080,
            },
            Step::Curl {
                host: "frontend1",
                url: "http://10.0.1.20:8080/hostname",
                ok: true,
                want: "HTTP 200",
                what: "frontend1, a member, gets in",
            },
            Step::Curl {
                host: "bastion",
                url: "http://10.0.1.20:8080/hostname",
                ok: false,
                want: "",
                what: "the bastion is no member: no answer",
            },
            Step::Curl {
                host: "frontend2",
                url: "http://10.0.1.20:8080/hostname",
                ok: false,
                want: "",
                what: "frontend2 is not in the group yet",
            },
            Step::Reload {
                from: "ip = \"10.0.0.22\"",
                to: "ip = \"10.0.0.22\"\nsecurity_groups = [\"frontend-sg\"]",
                what: "frontend2 joins frontend-sg (as an auto-scaled host would); backend-sg's rules do not change",
            },
            Step::Curl {
                host: "frontend2",
                url: "http://10.0.1.20:8080/hostname",
                ok: true,
                want: "HTTP 200",
                what: "frontend2 gets in, with no rule changed",
            },
            Step::Trace {
                q: ("bastion", "api", "tcp", Some(8080)),
                request: "dropped (sg_deny)",
                reply: None,
                hop: "api inbound: no rule of backend-sg allows it",
            },
            Step::Dropped { reason: "sg_deny", what: "natgw stats counted the bastion's attempts at api's interface" },
        ],
    },
    Scenario {
        name: "stateful-stateless",
        title: "one policy as a security group (stateful) and as a network ACL (stateless)",
        config: include_str!("../../examples/scenarios/stateful-stateless.toml"),
        steps: &[
            Step::Say("app serves 8080 to the public subnet and starts nothing. First as app's security group:"),
            Step::Serve {
                host: "app",
                argv: &["python3", "-m", "http.server", "8080", "--bind", "10.0.1.10", "--directory", "/etc"],
                port: 8080,
            },
            Step::Trace {
                q: ("bastion", "app", "tcp", Some(8080)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "app outbound: a tracked flow",
            },
            Step::Curl {
                host: "bastion",
                url: "http://10.0.1.10:8080/hostname",
                ok: true,
                want: "HTTP 200",
                what: "the reply leaves app with no outbound rule: the group is stateful",
            },
            Step::Reload {
                from: "inbound = [ { protocol = \"tcp\", ports = \"8080\", source = \"10.0.0.0/24\" } ]\noutbound = []",
                to: "inbound = [ { source = \"0.0.0.0/0\" } ]\noutbound = [ { destination = \"0.0.0.0/0\" } ]\n\n[[network_acls]]\nname = \"app-acl\"\ninbound = [ { rule = 100, action = \"allow\", protocol = \"tcp\", cidr = \"10.0.0.0/24\", ports = \"8080\" } ]\noutbound = []",
                what: "the same policy as the private subnet's ACL (app's group now open): inbound 8080 from 10.0.0.0/24, nothing outbound",
            },
            Step::Reload {
                from: "route_table = \"private\"",
                to: "route_table = \"private\"\nnetwork_acl = \"app-acl\"",
                what: "the ACL goes onto the private subnet",
            },
            Step::Trace {
                q: ("bastion", "app", "tcp", Some(8080)),
                request: "forwarded",
                reply: Some("dropped (acl_deny)"),
                hop: "app-acl (subnet private) outbound: rule * deny",
            },
            Step::Curl {
                host: "bastion",
                url: "http://10.0.1.10:8080/hostname",
                ok: false,
                want: "",
                what: "the reply needs its own outbound rule (to 1024-65535): the ACL is stateless",
            },
        ],
    },
    Scenario {
        name: "bastion-ssh",
        title: "SSH to the bastion only from the company's address",
        config: include_str!("../../examples/scenarios/bastion-ssh.toml"),
        steps: &[
            Step::Say("bastion runs sshd; bastion-sg admits TCP 22 from 198.51.100.10/32 (the office) only."),
            Step::File {
                name: "sshd_config",
                text: "Port 22\nListenAddress 10.0.0.10\nHostKey {dir}/ssh_host_ed25519_key\nPidFile {dir}/sshd.pid\nUsePAM no\nPasswordAuthentication no\n",
            },
            Step::MkDir("/run/sshd"),
            Step::Run {
                host: "bastion",
                argv: &["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "{dir}/ssh_host_ed25519_key"],
                ok: true,
                want: "",
                what: "a host key for this run",
            },
            Step::Serve { host: "bastion", argv: &["/usr/sbin/sshd", "-D", "-e", "-f", "{dir}/sshd_config"], port: 22 },
            Step::Run {
                host: "web",
                argv: &["nc", "-w", "2", "-s", "198.51.100.10", "203.0.113.10", "22"],
                ok: true,
                want: "SSH-2.0-OpenSSH",
                what: "from the office, sshd answers through the Elastic IP",
            },
            Step::Run {
                host: "web",
                argv: &["nc", "-w", "2", "-s", "198.51.100.11", "203.0.113.10", "22"],
                ok: false,
                want: "",
                what: "from anywhere else, nothing",
            },
            Step::Trace {
                q: ("198.51.100.11", "203.0.113.10", "tcp", Some(22)),
                request: "dropped (sg_deny)",
                reply: None,
                hop: "bastion inbound: no rule of bastion-sg allows it",
            },
            Step::Trace {
                q: ("198.51.100.10", "203.0.113.10", "tcp", Some(22)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "group bastion-sg inbound rule 1 (tcp port 22 from 198.51.100.10/32) allows",
            },
        ],
    },
    Scenario {
        name: "partner-allowlist",
        title: "a partner's API that admits only the NAT gateway's Elastic IP",
        config: include_str!("../../examples/scenarios/partner-allowlist.toml"),
        steps: &[
            Step::Say(
                "The partner (web, nginx) allow-lists 203.0.113.5, the NAT gateway's Elastic IP: every private host leaves as it.",
            ),
            Step::File {
                name: "nginx.conf",
                text: "worker_processes 1; pid {dir}/nginx.pid; error_log stderr; daemon off;\nevents { worker_connections 64; }\nhttp { access_log off; server { listen 198.51.100.10:8080; location / { if ($remote_addr != 203.0.113.5) { return 403; } return 200 \"partner API: hello\\n\"; } } }\n",
            },
            Step::Serve { host: "web", argv: &["nginx", "-c", "{dir}/nginx.conf"], port: 8080 },
            Step::Trace {
                q: ("app", "198.51.100.10", "tcp", Some(8080)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "nat-1: new mapping, source 10.0.1.10:40000 -> 203.0.113.5:",
            },
            Step::Curl {
                host: "app",
                url: "http://198.51.100.10:8080/",
                ok: true,
                want: "partner API: hello",
                what: "app, through the NAT gateway, is admitted",
            },
            Step::Curl {
                host: "bastion",
                url: "http://198.51.100.10:8080/",
                ok: true,
                want: "HTTP 403",
                what: "the bastion leaves as its own Elastic IP 203.0.113.10: refused (403)",
            },
        ],
    },
    Scenario {
        name: "endpoint-private-dns",
        title: "an interface endpoint's private DNS: the service's name answers the public address, then the endpoint's",
        config: include_str!("../../examples/scenarios/endpoint-private-dns.toml"),
        steps: &[
            Step::Say(
                "S3 has an interface endpoint (vpce-11112222) in the private subnet, private DNS off. app looks S3 up.",
            ),
            Step::Run {
                host: "app",
                argv: &["nslookup", "s3.ap-northeast-2.amazonaws.com"],
                ok: true,
                want: "Address: 192.0.2.10",
                what: "private DNS off: the public address",
            },
            Step::Run {
                host: "app",
                argv: &["/usr/bin/aws", "s3", "ls"],
                ok: true,
                want: "lab-bucket",
                what: "aws s3 ls works, through the NAT gateway",
            },
            Step::Trace {
                q: ("app", "192.0.2.10", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "nat-1: new mapping",
            },
            Step::Reload {
                from: "private_dns = false",
                to: "private_dns = true",
                what: "private DNS on (the VPC has DNS support and DNS hostnames on, as AWS requires)",
            },
            Step::Run {
                host: "app",
                argv: &["nslookup", "s3.ap-northeast-2.amazonaws.com"],
                ok: true,
                want: "Address: 10.0.1.254",
                what: "private DNS on: the endpoint's private address",
            },
            Step::Run {
                host: "app",
                argv: &["/usr/bin/aws", "s3", "ls"],
                ok: true,
                want: "lab-bucket",
                what: "aws s3 ls works, through the endpoint (no NAT gateway, no internet gateway)",
            },
            Step::Trace {
                q: ("app", "10.0.1.254", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "endpoint-sg",
            },
        ],
    },
    Scenario {
        name: "gateway-endpoint",
        title: "S3 through the NAT gateway, then through a gateway endpoint: the NAT hop is gone",
        config: include_str!("../../examples/scenarios/gateway-endpoint.toml"),
        steps: &[
            Step::Say("S3's public address is 192.0.2.10. The private route table sends it to the NAT gateway."),
            Step::Run {
                host: "app",
                argv: &["traceroute", "-n", "-q", "1", "-w", "1", "-m", "5", "192.0.2.10"],
                ok: true,
                want: " 2  10.0.0.5 ",
                what: "hop 2 is the NAT gateway's private address",
            },
            Step::Run {
                host: "app",
                argv: &["/usr/bin/aws", "s3", "ls"],
                ok: true,
                want: "lab-bucket",
                what: "aws s3 ls works through the NAT gateway",
            },
            Step::Reload {
                from: "route_tables = []",
                to: "route_tables = [\"private\"]",
                what: "the gateway endpoint vpce-1a2b3c4d goes into the private route table (a pl- route)",
            },
            Step::Run {
                host: "app",
                argv: &["traceroute", "-n", "-q", "1", "-w", "1", "-m", "5", "192.0.2.10"],
                ok: true,
                want: " 2  192.0.2.10 ",
                what: "hop 2 is S3 itself: no NAT hop",
            },
            Step::Run {
                host: "app",
                argv: &["/usr/bin/aws", "s3", "ls"],
                ok: true,
                want: "lab-bucket",
                what: "aws s3 ls works through the endpoint",
            },
            Step::Trace {
                q: ("app", "192.0.2.10", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "private (subnet private): pl-5fe16810 (192.0.2.10/32) -> vpce-1a2b3c4d",
            },
        ],
    },
    Scenario {
        name: "bucket-policy-vpce",
        title: "the notes' bucket policy: only requests through vpce-1a2b3c4d",
        config: include_str!("../../examples/scenarios/bucket-policy-vpce.toml"),
        steps: &[
            Step::Say(
                "lab-bucket denies every request whose aws:SourceVpce is not vpce-1a2b3c4d (the private table's endpoint); worker's table has vpce-5e6f7a8b.",
            ),
            Step::Run {
                host: "app",
                argv: &["/usr/bin/aws", "s3", "cp", "/etc/hostname", "s3://lab-bucket/hello.txt"],
                ok: true,
                want: "upload:",
                what: "app, through vpce-1a2b3c4d, may write",
            },
            Step::Run {
                host: "app",
                argv: &["/usr/bin/aws", "s3", "ls", "s3://lab-bucket"],
                ok: true,
                want: "hello.txt",
                what: "and list",
            },
            Step::Run {
                host: "worker",
                argv: &["/usr/bin/aws", "s3", "ls", "s3://lab-bucket"],
                ok: false,
                want: "AccessDenied",
                what: "worker, through vpce-5e6f7a8b, gets 403 AccessDenied",
            },
            Step::Trace {
                q: ("worker", "192.0.2.10", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "vpce-5e6f7a8b: to the service privately",
            },
            Step::Reload {
                from: "cidr = \"10.0.2.0/24\"\nroute_table = \"private-b\"",
                to: "cidr = \"10.0.2.0/24\"\nroute_table = \"private\"",
                what: "worker's subnet takes the private route table (vpce-1a2b3c4d)",
            },
            Step::Run {
                host: "worker",
                argv: &["/usr/bin/aws", "s3", "ls", "s3://lab-bucket"],
                ok: true,
                want: "hello.txt",
                what: "the same request from worker now succeeds",
            },
            Step::Reload {
                from: "cidr = \"10.0.2.0/24\"\nroute_table = \"private\"",
                to: "cidr = \"10.0.2.0/24\"\nroute_table = \"nat-only\"",
                what: "worker's subnet takes a table with no endpoint: S3 through the NAT gateway",
            },
            Step::Run {
                host: "worker",
                argv: &["/usr/bin/aws", "s3", "ls", "s3://lab-bucket"],
                ok: false,
                want: "AccessDenied",
                what: "through the NAT gateway there is no aws:SourceVpce: 403",
            },
            Step::Trace {
                q: ("worker", "192.0.2.10", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "nat-1: new mapping",
            },
            Step::Run {
                host: "worker",
                argv: &["sh", "-c", "sleep 2; grep -h ' 10.0.2.10 192.0.2.10 ' {dir}/flows.log | tail -4"],
                ok: true,
                want: " ACCEPT OK",
                what: "the flow logs: worker's interface sent S3 its private address, every time (the NAT gateway's records are on its own interface)",
            },
        ],
    },
    Scenario {
        name: "lambda-dynamodb",
        title: "the notes' Lambda writes to DynamoDB through the NAT gateway, then through a gateway endpoint",
        config: include_str!("../../examples/scenarios/lambda-dynamodb.toml"),
        steps: &[
            Step::Say(
                "app stands for a Lambda function in the private subnet; DynamoDB's public address is 192.0.2.20.",
            ),
            Step::Run {
                host: "app",
                argv: &[
                    "/usr/bin/aws",
                    "dynamodb",
                    "put-item",
                    "--table-name",
                    "orders",
                    "--item",
                    "{\"id\": {\"S\": \"42\"}, \"what\": {\"S\": \"coffee\"}}",
                ],
                ok: true,
                want: "",
                what: "put-item works through the NAT gateway (which AWS bills per GB)",
            },
            Step::Trace {
                q: ("app", "192.0.2.20", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "nat-1: new mapping",
            },
            Step::Reload {
                from: "route_tables = []",
                to: "route_tables = [\"private\"]",
                what: "a gateway endpoint for DynamoDB in the private route table (free on AWS)",
            },
            Step::Run {
                host: "app",
                argv: &[
                    "/usr/bin/aws",
                    "dynamodb",
                    "get-item",
                    "--table-name",
                    "orders",
                    "--key",
                    "{\"id\": {\"S\": \"42\"}}",
                    "--output",
                    "text",
                ],
                ok: true,
                want: "coffee",
                what: "get-item reads it back through the endpoint",
            },
            Step::Run {
                host: "app",
                argv: &["traceroute", "-n", "-q", "1", "-w", "1", "-m", "5", "192.0.2.20"],
                ok: true,
                want: " 2  192.0.2.20 ",
                what: "no NAT hop on the way",
            },
            Step::Trace {
                q: ("app", "192.0.2.20", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "vpce-0d0d0d0d: to the service privately",
            },
        ],
    },
    Scenario {
        name: "nat-instance",
        title: "the notes' NAT instance (a host whose kernel masquerades) beside the NAT gateway",
        config: include_str!("../../examples/scenarios/nat-instance.toml"),
        steps: &[
            Step::Say("app's route table sends the internet to natinst, whose source/destination check is still on."),
            Step::Run {
                host: "app",
                argv: PING_WEB,
                ok: false,
                want: "0 received",
                what: "the route is accepted, but the instance never gets app's packets",
            },
            Step::Dropped { reason: "source_check", what: "natgw stats counted them at the check" },
            Step::Reload {
                from: "source_dest_check = true",
                to: "source_dest_check = false",
                what: "turn natinst's check off (AWS's ModifyInstanceAttribute)",
            },
            Step::Run {
                host: "natinst",
                argv: &[
                    "sh",
                    "-c",
                    "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 && nft add table ip nat && nft 'add chain ip nat post { type nat hook postrouting priority 100 ; }' && nft add rule ip nat post ip saddr 10.0.1.0/24 masquerade && nft list table ip nat",
                ],
                ok: true,
                want: "masquerade",
                what: "natinst's own kernel forwards and masquerades (in its namespace only)",
            },
            Step::Run {
                host: "app",
                argv: PING_WEB,
                ok: true,
                want: "1 received",
                what: "app reaches the internet through the instance",
            },
            Step::Run {
                host: "natinst",
                argv: &["conntrack", "-L", "-p", "icmp"],
                ok: true,
                want: "src=10.0.1.10 dst=198.51.100.10",
                what: "the instance's conntrack -L holds app's translation",
            },
            Step::Trace {
                q: ("app", "198.51.100.10", "icmp", None),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "via-instance (subnet private-a): 0.0.0.0/0 -> natinst",
            },
            Step::Run {
                host: "app",
                argv: &["traceroute", "-n", "-q", "1", "-w", "1", "-m", "5", "198.51.100.10"],
                ok: true,
                want: " 2  10.0.0.20 ",
                what: "traceroute shows the instance as a hop",
            },
            Step::Run {
                host: "app2",
                argv: &["traceroute", "-n", "-q", "1", "-w", "1", "-m", "5", "198.51.100.10"],
                ok: true,
                want: " 2  10.0.0.5 ",
                what: "and app2's the NAT gateway's private address",
            },
            Step::Run {
                host: "natinst",
                argv: &["sysctl", "-w", "net.ipv4.ip_forward=0"],
                ok: true,
                want: "= 0",
                what: "the instance stops forwarding (as a stopped or failed instance would)",
            },
            Step::Run {
                host: "app",
                argv: PING_WEB,
                ok: false,
                want: "0 received",
                what: "app's egress is gone: the instance was a single point of failure",
            },
            Step::Run {
                host: "app2",
                argv: PING_WEB,
                ok: true,
                want: "1 received",
                what: "app2's path through the NAT gateway (AWS's managed one) does not notice",
            },
        ],
    },
    Scenario {
        name: "peering-not-transitive",
        title: "a shared-services VPC peered with two others: not transitive, no edge-to-edge, overlap allowed apart",
        config: include_str!("../../examples/scenarios/peering-not-transitive.toml"),
        steps: &[
            Step::Say("Four VPCs: app and logs are each peered with shared; legacy (app's very CIDR) with nothing."),
            Step::Run {
                host: "app",
                argv: &["ping", "-c", "1", "-W", "1", "10.1.1.10"],
                ok: true,
                want: "1 received",
                what: "app reaches auth in the shared VPC over pcx-app-shared",
            },
            Step::Run {
                host: "auth",
                argv: &["ping", "-c", "1", "-W", "1", "10.2.1.10"],
                ok: true,
                want: "1 received",
                what: "auth reaches logs over pcx-shared-logs",
            },
            Step::Run {
                host: "app",
                argv: &["ping", "-c", "1", "-W", "1", "10.2.1.10"],
                ok: false,
                want: "0 received",
                what: "app cannot reach logs through shared, though its route table says pcx-app-shared: not transitive",
            },
            Step::Trace {
                q: ("app", "logs", "icmp", None),
                request: "dropped (peering_transit)",
                reply: None,
                hop: "pcx-app-shared: 10.2.1.10 is not in the peer VPC shared",
            },
            Step::Run {
                host: "auth",
                argv: &["ping", "-c", "1", "-W", "1", "198.51.100.10"],
                ok: true,
                want: "1 received",
                what: "auth reaches the internet through its VPC's NAT gateway",
            },
            Step::Run {
                host: "app",
                argv: &["ping", "-c", "1", "-W", "1", "198.51.100.10"],
                ok: false,
                want: "0 received",
                what: "app cannot use shared's NAT gateway through the peering: no edge-to-edge routing",
            },
            Step::Dropped { reason: "peering_transit", what: "natgw stats counted both at the peering" },
            Step::Run {
                host: "legacy",
                argv: &["ping", "-c", "1", "-W", "1", "198.51.100.10"],
                ok: true,
                want: "1 received",
                what: "legacy, with app's own address 10.0.1.10 in an overlapping VPC, reaches the internet at its Elastic IP",
            },
            Step::Trace {
                q: ("legacy", "198.51.100.10", "icmp", None),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "source 10.0.1.10 -> Elastic IP 203.0.113.20 (legacy's, 1:1)",
            },
        ],
    },
    Scenario {
        name: "eip-move",
        title: "an Elastic IP moved from one instance to another: new connections reach the new one at once",
        config: include_str!("../../examples/scenarios/eip-move.toml"),
        steps: &[
            Step::Say("blue serves the site at Elastic IP 203.0.113.10; green stands by with no public address."),
            Step::File { name: "blue/who", text: "blue\n" },
            Step::File { name: "green/who", text: "green\n" },
            Step::Serve {
                host: "blue",
                argv: &["python3", "-m", "http.server", "80", "--bind", "10.0.0.10", "--directory", "{dir}/blue"],
                port: 80,
            },
            Step::Serve {
                host: "green",
                argv: &["python3", "-m", "http.server", "80", "--bind", "10.0.0.11", "--directory", "{dir}/green"],
                port: 80,
            },
            Step::Natgw {
                argv: &["eip", "list"],
                ok: true,
                want: "203.0.113.10     host blue",
                what: "the Elastic IP is blue's",
            },
            Step::Curl {
                host: "web",
                url: "http://203.0.113.10/who",
                ok: true,
                want: "blue",
                what: "the internet reaches blue at 203.0.113.10",
            },
            Step::Natgw {
                argv: &["eip", "associate", "203.0.113.10", "green"],
                ok: false,
                want: "Resource.AlreadyAssociated",
                what: "AWS refuses to take an associated address without --allow-reassociation",
            },
            Step::Natgw {
                argv: &["eip", "associate", "203.0.113.10", "green", "--allow-reassociation"],
                ok: true,
                want: "203.0.113.10 associated with green",
                what: "the address moves to green",
            },
            Step::Curl {
                host: "web",
                url: "http://203.0.113.10/who",
                ok: true,
                want: "green",
                what: "a new connection to 203.0.113.10 reaches green at once",
            },
            Step::Run {
                host: "blue",
                argv: PING_WEB,
                ok: false,
                want: "0 received",
                what: "blue, without a public address, no longer reaches the internet",
            },
            Step::Dropped { reason: "no_public_ip", what: "natgw stats counted it at the internet gateway" },
            Step::Natgw {
                argv: &["eip", "allocate"],
                ok: true,
                want: "allocated 203.0.113.1 (eipalloc-cb007101)",
                what: "a second Elastic IP, the pool's lowest free address",
            },
            Step::Natgw {
                argv: &["eip", "list"],
                ok: true,
                want: "1 idle: AWS bills an allocated Elastic IP",
                what: "natgw eip list says what an idle address costs",
            },
            Step::Natgw {
                argv: &["eip", "associate", "203.0.113.1", "blue"],
                ok: true,
                want: "203.0.113.1 associated with blue",
                what: "blue gets it",
            },
            Step::Run {
                host: "blue",
                argv: PING_WEB,
                ok: true,
                want: "1 received",
                what: "blue reaches the internet again",
            },
            Step::Trace {
                q: ("blue", "198.51.100.10", "icmp", None),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "source 10.0.0.10 -> Elastic IP 203.0.113.1 (blue's, 1:1)",
            },
            Step::Natgw {
                argv: &["eip", "release", "203.0.113.1"],
                ok: false,
                want: "InvalidIPAddress.InUse",
                what: "an associated address cannot be released",
            },
            Step::Natgw {
                argv: &["eip", "disassociate", "203.0.113.1"],
                ok: true,
                want: "203.0.113.1 disassociated from blue",
                what: "taken off blue, still allocated",
            },
            Step::Natgw {
                argv: &["eip", "release", "203.0.113.1"],
                ok: true,
                want: "203.0.113.1 released",
                what: "and given back",
            },
        ],
    },
    Scenario {
        name: "eni-move",
        title: "a secondary network interface moved to another instance, keeping its address, Elastic IP and groups",
        config: include_str!("../../examples/scenarios/eni-move.toml"),
        steps: &[
            Step::Say("eni-svc (10.0.0.50, Elastic IP 203.0.113.50, group svc-sg) is web1's secondary interface."),
            Step::File { name: "web1/who", text: "web1\n" },
            Step::File { name: "web2/who", text: "web2\n" },
            Step::Serve {
                host: "web1",
                argv: &["python3", "-m", "http.server", "80", "--directory", "{dir}/web1"],
                port: 80,
            },
            Step::Serve {
                host: "web2",
                argv: &["python3", "-m", "http.server", "80", "--directory", "{dir}/web2"],
                port: 80,
            },
            Step::Natgw {
                argv: &["eni", "list"],
                ok: true,
                want: "secondary web1",
                what: "eni-svc is attached to web1",
            },
            Step::Curl {
                host: "web",
                url: "http://203.0.113.50/who",
                ok: true,
                want: "web1",
                what: "the internet reaches web1 at eni-svc's Elastic IP",
            },
            Step::Natgw {
                argv: &["eni", "detach", "web1"],
                ok: false,
                want: "OperationNotPermitted",
                what: "an instance's primary interface cannot be detached",
            },
            Step::Natgw {
                argv: &["eni", "attach", "eni-svc", "web2"],
                ok: false,
                want: "InvalidNetworkInterface.InUse",
                what: "an attached interface must be detached first",
            },
            Step::Natgw {
                argv: &["eni", "detach", "eni-svc"],
                ok: true,
                want: "eni-svc detached",
                what: "detached: its device waits in a namespace of the gateway's own",
            },
            Step::Curl {
                host: "web",
                url: "http://203.0.113.50/who",
                ok: false,
                want: "HTTP 000",
                what: "nothing answers at its address while it is detached",
            },
            Step::Dropped { reason: "eni_detached", what: "natgw stats counted what came for it while detached" },
            Step::Natgw {
                argv: &["eni", "attach", "eni-svc", "web2"],
                ok: true,
                want: "eni-svc attached to web2",
                what: "attached to web2",
            },
            Step::Run {
                host: "web2",
                argv: &["ip", "-br", "addr"],
                ok: true,
                want: "10.0.0.50/24",
                what: "web2's namespace now has the interface with its private address",
            },
            Step::Curl {
                host: "web",
                url: "http://203.0.113.50/who",
                ok: true,
                want: "web2",
                what: "the same Elastic IP and private address reach web2, through the same group",
            },
            Step::Reload {
                from: "description = \"the site\"",
                to: "description = \"the site, now on web2\"",
                what: "a reload (the file still names web1) keeps the interface where it was moved",
            },
            Step::Curl { host: "web", url: "http://203.0.113.50/who", ok: true, want: "web2", what: "still web2" },
            Step::Trace {
                q: ("198.51.100.10", "203.0.113.50", "tcp", Some(80)),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "group svc-sg inbound rule 1",
            },
        ],
    },
    Scenario {
        name: "transit-hub",
        title: "a transit gateway hub: every spoke reaches the shared VPC and the internet, spokes kept apart by route tables",
        config: include_str!("../../examples/scenarios/transit-hub.toml"),
        steps: &[
            Step::Say(
                "tgw-hub joins the shared VPC and the spokes prod and dev; the spokes' transit route table knows shared, a default route and a blackhole for 10.0.0.0/8.",
            ),
            Step::Run {
                host: "prod",
                argv: &["ping", "-c", "1", "-W", "1", "10.10.1.10"],
                ok: true,
                want: "1 received",
                what: "prod reaches auth in the shared VPC through the hub",
            },
            Step::Run {
                host: "dev",
                argv: &["ping", "-c", "1", "-W", "1", "10.10.1.10"],
                ok: true,
                want: "1 received",
                what: "so does dev",
            },
            Step::Run {
                host: "prod",
                argv: &["ping", "-c", "1", "-W", "1", "10.30.1.10"],
                ok: false,
                want: "0 received",
                what: "prod does not reach dev: the spokes' table sends 10.0.0.0/8 to a blackhole",
            },
            Step::Trace {
                q: ("prod", "dev", "icmp", None),
                request: "dropped (blackhole)",
                reply: None,
                hop: "tgw-rtb-spokes (associated with tgw-attach-prod): 10.0.0.0/8 -> blackhole (static)",
            },
            Step::Dropped { reason: "blackhole", what: "natgw stats counted it at the transit gateway" },
            Step::Run {
                host: "prod",
                argv: PING_WEB,
                ok: true,
                want: "1 received",
                what: "prod reaches the internet through the shared VPC's NAT gateway (centralized egress)",
            },
            Step::Trace {
                q: ("dev", "198.51.100.10", "icmp", None),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "nat-egress: new mapping, source 10.30.1.10",
            },
            Step::Reload {
                from: "  { destination = \"10.0.0.0/8\", target = \"blackhole\" },\n",
                to: "",
                what: "take the blackhole route away: the spokes' default route now also carries 10.30.0.0/16 to the hub",
            },
            Step::Run {
                host: "prod",
                argv: &["ping", "-c", "1", "-W", "1", "10.30.1.10"],
                ok: true,
                want: "1 received",
                what: "prod reaches dev through the shared VPC: isolation was the route tables' alone",
            },
            Step::Trace {
                q: ("prod", "dev", "icmp", None),
                request: "forwarded",
                reply: Some("forwarded"),
                hop: "tgw-rtb-shared (associated with tgw-attach-shared): 10.30.0.0/16 -> tgw-attach-dev (propagated)",
            },
        ],
    },
];

/// The scenarios, one a line.
pub fn list() -> String {
    ALL.iter().map(|s| format!("{:<22} {}\n", s.name, s.title)).collect()
}

/// Runs scenario `name`.
pub fn run(name: &str, exe: &Path) -> Result<(), DemoError> {
    let Some(sc) = ALL.iter().find(|s| s.name == name) else {
        let names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
        return Err(DemoError::Check(format!("no scenario `{name}`: one of {}", names.join(", "))));
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    println!("natgw lab scenario {}: {}", sc.name, sc.title);
    let lab_name = format!("scn-{}", std::process::id());
    let opts = UpOptions {
        name: lab_name,
        // "(embedded)": not a path, so the lab writes the file into its own
        // directory and the file's relative paths (flow logs) land there.
        config: (format!("examples/scenarios/{}.toml (embedded)", sc.name), sc.config.to_string()),
        workers: 0,
        offload: None,
        steering: None,
        exe: exe.to_path_buf(),
        kernel: false,
        route_only: false,
        web: None,
    };
    let (state, _) = lab::up(&opts)?;
    let mut d = Demo { state, stop, failures: Vec::new() };
    let mut children = Vec::new();
    let result = steps(&mut d, sc, exe, &mut children);
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    println!("\nTearing down the lab ({}-*) ...", d.state.prefix);
    lab::teardown(&d.state);
    let left: Vec<String> =
        netns::list().into_iter().filter(|n| n.starts_with(&format!("{}-", d.state.prefix))).collect();
    if !left.is_empty() {
        d.failures.push(format!("namespaces left behind: {}", left.join(", ")));
    }
    result?;
    if d.failures.is_empty() {
        println!("natgw lab scenario {}: every check passed.", sc.name);
        Ok(())
    } else {
        Err(DemoError::Check(format!("{} check(s) failed: {}", d.failures.len(), d.failures.join("; "))))
    }
}

fn steps(d: &mut Demo, sc: &Scenario, exe: &Path, children: &mut Vec<Child>) -> Result<(), DemoError> {
    let dir = LabState::dir(&d.state.name);
    let dir_s = dir.display().to_string();
    let fill = |a: &str| a.replace("{dir}", &dir_s);
    let mut config = sc.config.to_string();
    for (i, step) in sc.steps.iter().enumerate() {
        d.check_stop()?;
        match step {
            Step::Say(s) => println!("\n{s}"),
            Step::MkDir(path) => {
                std::fs::create_dir_all(path).map_err(|source| DemoError::Io { what: path.to_string(), source })?;
            }
            Step::File { name, text } => {
                let path = dir.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|source| DemoError::Io { what: parent.display().to_string(), source })?;
                }
                std::fs::write(&path, fill(text))
                    .map_err(|source| DemoError::Io { what: path.display().to_string(), source })?;
            }
            Step::Serve { host, argv, port } => {
                let argv: Vec<String> = argv.iter().map(|a| fill(a)).collect();
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let log = dir.join(format!("server-{i}.log"));
                println!("\n(in {host}, in the background: {})", argv.join(" "));
                children.push(d.background(host, &argv, &log)?);
                if let Err(e) = d.wait_listening(host, "tcp", *port) {
                    print!("{}", indent(&std::fs::read_to_string(&log).unwrap_or_default()));
                    return Err(e);
                }
            }
            Step::Run { host, argv, ok, want, what } => {
                println!();
                let argv: Vec<String> = argv.iter().map(|a| fill(a)).collect();
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let (success, out) = d.show(host, &argv)?;
                d.expect(success == *ok && out.contains(want), what);
            }
            Step::Curl { host, url, ok, want, what } => {
                println!();
                let argv = ["curl", "-sS", "--max-time", "2", "-w", "HTTP %{http_code}", url];
                let (success, out) = d.show(host, &argv)?;
                d.expect(success == *ok && out.contains(want), what);
            }
            Step::Trace { q, request, reply, hop } => {
                let query = Query { src: q.0.into(), dst: q.1.into(), proto: q.2.into(), port: q.3, sport: None };
                let flag = format!(" --lab {}", d.state.name);
                let port = q.3.map_or(String::new(), |p| format!(" {p}"));
                println!("\n$ natgw trace{flag} {} {} {}{port}", q.0, q.1, q.2);
                let Some(Reply::Trace { report }) = d.request(&Request::Trace { query }) else {
                    d.expect(false, "natgw trace answers");
                    continue;
                };
                print!("{}", indent(&trace::render(&report)));
                let reply_ok = match (reply, &report.reply) {
                    (None, None) => true,
                    (Some(want), Some(leg)) => leg.verdict.starts_with(want),
                    _ => false,
                };
                let hops = report.request.hops.iter().chain(report.reply.iter().flat_map(|r| r.hops.iter()));
                let named = hops.map(|h| h.detail.as_str()).any(|h| h.contains(hop));
                let what = format!(
                    "trace: request {request}{}, and a hop says \"{hop}\"",
                    reply.map_or(String::new(), |r| format!(", reply {r}"))
                );
                d.expect(report.request.verdict.starts_with(request) && reply_ok && named, &what);
            }
            Step::Reload { from, to, what } => {
                println!("\n{what}:");
                if !config.contains(from) {
                    d.expect(false, &format!("the scenario's file has `{from}`"));
                    continue;
                }
                config = config.replacen(from, to, 1);
                let path = dir.join("vpc.toml");
                std::fs::write(&path, &config)
                    .map_err(|source| DemoError::Io { what: path.display().to_string(), source })?;
                println!("$ natgw reload --lab {} {}", d.state.name, path.display());
                let reply = d.request(&Request::Reload { path: path.display().to_string() });
                let ok = matches!(reply, Some(Reply::Ok));
                if let Some(Reply::Error { message }) = &reply {
                    println!("    {message}");
                }
                d.expect(ok, "the gateway took the edited file");
            }
            Step::Dropped { reason, what } => {
                let n = match d.request(&Request::Stats) {
                    Some(Reply::Stats(s)) => s.totals.drop_count(reason),
                    _ => 0,
                };
                println!("\n$ natgw stats --lab {}   ({reason}: {n})", d.state.name);
                d.expect(n > 0, what);
            }
            Step::Natgw { argv, ok, want, what } => {
                println!("\n$ natgw {} --lab {}", argv.join(" "), d.state.name);
                let out = std::process::Command::new(exe)
                    .args(*argv)
                    .args(["--lab", &d.state.name])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|source| DemoError::Io { what: exe.display().to_string(), source })?;
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                print!("{}", indent(&text));
                d.expect(out.status.success() == *ok && text.contains(want), what);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_file_loads_and_every_edit_applies() {
        for sc in ALL {
            let mut text = sc.config.to_string();
            crate::control::config::parse(sc.name, &text).unwrap_or_else(|e| panic!("{}: {e}", sc.name));
            for step in sc.steps {
                if let Step::Reload { from, to, .. } = step {
                    assert!(text.contains(from), "{}: `{from}`", sc.name);
                    text = text.replacen(from, to, 1);
                    crate::control::config::parse(sc.name, &text).unwrap_or_else(|e| panic!("{}: {e}", sc.name));
                }
            }
        }
    }

    #[test]
    fn every_trace_step_predicts_what_it_says_on_the_scenarios_file() {
        for sc in ALL {
            let mut text = sc.config.to_string();
            let mut vpc = crate::control::config::parse(sc.name, &text).unwrap();
            for step in sc.steps {
                match step {
                    Step::Reload { from, to, .. } => {
                        text = text.replacen(from, to, 1);
                        vpc = crate::control::config::parse(sc.name, &text).unwrap();
                    }
                    // Elastic IP changes, as the running gateway makes them.
                    Step::Natgw { argv, ok, .. } => {
                        let ip = |i: usize| argv[i].parse::<std::net::Ipv4Addr>().unwrap();
                        let done = match argv {
                            ["eip", "list"] => Ok(()),
                            ["eip", "allocate"] => vpc.eip_allocate(None).map(drop),
                            ["eip", "associate", _, host, rest @ ..] => {
                                vpc.eip_associate(ip(2), host, rest.contains(&"--allow-reassociation")).map(drop)
                            }
                            ["eip", "disassociate", _] => vpc.eip_disassociate(ip(2)).map(drop),
                            ["eip", "release", _] => vpc.eip_release(ip(2)),
                            ["eni", "list"] => Ok(()),
                            ["eni", "detach", eni] => vpc.eni_detach(eni).map(drop),
                            ["eni", "attach", eni, instance] => vpc.eni_attach(eni, instance).map(drop),
                            other => panic!("{}: the test does not replay natgw {other:?}", sc.name),
                        };
                        assert_eq!(done.is_ok(), *ok, "{}: natgw {argv:?}: {done:?}", sc.name);
                    }
                    Step::Trace { q, request, reply, hop } => {
                        let query =
                            Query { src: q.0.into(), dst: q.1.into(), proto: q.2.into(), port: q.3, sport: None };
                        let r = trace::trace(&vpc, &query).unwrap();
                        assert!(r.request.verdict.starts_with(request), "{}: {}", sc.name, trace::render(&r));
                        assert_eq!(
                            r.reply.as_ref().map(|l| l.verdict.starts_with(reply.unwrap_or("?"))),
                            reply.map(|_| true),
                            "{}: {}",
                            sc.name,
                            trace::render(&r)
                        );
                        let all = trace::render(&r);
                        assert!(all.contains(hop), "{}: `{hop}` in\n{all}", sc.name);
                    }
                    _ => {}
                }
            }
        }
    }
}
