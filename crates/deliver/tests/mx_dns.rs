//! MX resolution through hickory against a fake DNS server on a loopback UDP
//! port: every answer shape the router must tell apart, with no real DNS.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use deliver::mx::{MxError, MxResolver, Overrides};
use deliver::smtp::Destination;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// The zone: what each (name, type) answers.
fn answer(name: &str, qtype: RecordType) -> (ResponseCode, Vec<RData>) {
    let mx = |pref, host: &str| RData::MX(MX::new(pref, Name::from_ascii(host).unwrap()));
    match (name, qtype) {
        ("mx.test.", RecordType::MX) => {
            (ResponseCode::NoError, vec![mx(20, "b.mx.test."), mx(10, "a.mx.test."), mx(30, "c.mx.test.")])
        }
        ("null.test.", RecordType::MX) => (ResponseCode::NoError, vec![mx(0, ".")]),
        ("addr.test.", RecordType::A) => {
            (ResponseCode::NoError, vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))])
        }
        ("addr.test.", _) | ("nohost.test.", _) => (ResponseCode::NoError, vec![]),
        ("fail.test.", _) => (ResponseCode::ServFail, vec![]),
        _ => (ResponseCode::NXDomain, vec![]),
    }
}

async fn fake_dns() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
            let Some(q) = query.queries.first().cloned() else { continue };
            let (code, rdata) = answer(&q.name().to_ascii().to_ascii_lowercase(), q.query_type());
            let mut reply = Message::response(query.metadata.id, OpCode::Query);
            reply.metadata.response_code = code;
            reply.metadata.recursion_desired = true;
            reply.metadata.recursion_available = true;
            reply.add_query(q.clone());
            for r in rdata {
                reply.add_answer(Record::from_rdata(q.name().clone(), 300, r));
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    port
}

async fn resolver(overrides: Overrides) -> MxResolver {
    let port = fake_dns().await;
    let mut ns = NameServerConfig::udp(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for c in &mut ns.connections {
        c.port = port;
    }
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    let r = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
    .unwrap();
    MxResolver::with_resolver(overrides, r)
}

#[tokio::test]
async fn answers_become_routes_or_replies() {
    let r = resolver(Overrides::new()).await;
    assert_eq!(
        r.resolve("MX.test").await.unwrap(),
        [
            Destination::new("a.mx.test", 25),
            Destination::new("b.mx.test", 25),
            Destination::new("c.mx.test", 25)
        ]
    );
    assert_eq!(r.resolve("addr.test").await.unwrap(), [Destination::new("addr.test", 25)], "implicit MX");
    assert_eq!(r.resolve("null.test").await.unwrap_err(), MxError::NullMx("null.test".into()));
    assert_eq!(r.resolve("nx.test").await.unwrap_err(), MxError::NoSuchDomain("nx.test".into()));
    assert_eq!(r.resolve("nohost.test").await.unwrap_err(), MxError::NoMailHost("nohost.test".into()));
    let e = r.resolve("fail.test").await.unwrap_err();
    assert!(!e.is_permanent(), "{e:?}");
    assert_eq!(e.reply().status.as_deref(), Some("4.4.3"));
}

#[tokio::test]
async fn overrides_win_over_dns() {
    let mut o = Overrides::new();
    o.insert("nx.test", &["relay.internal:2525"]).unwrap();
    let r = resolver(o).await;
    assert_eq!(r.resolve("nx.test").await.unwrap(), [Destination::new("relay.internal", 2525)]);
    assert!(r.resolve("null.test").await.is_err(), "other domains still use DNS");
}
