//! Which role each gRPC method needs. Writes need `ingest`, reads need `query` (a `peer`
//! credential may do both); the health service is open, as it says only whether the broker
//! serves. A method not listed here needs `peer`, so a service added later is closed until it
//! is given a row.

use ringwatch_net::grpc_auth::Access;
use ringwatch_net::token::Role;

pub fn routes(path: &str) -> Access {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Access::Needs(Role::Peer);
    };
    match (service, method) {
        ("grpc.health.v1.Health", _) => Access::Open,
        ("ringwatch.v1.Ingest", "Stream") => Access::Needs(Role::Ingest),
        ("ringwatch.v1.Query", "Range" | "Latest" | "Hosts" | "Subscribe" | "Cluster") => {
            Access::Needs(Role::Query)
        }
        ("monitor.MonitorService", "SendMetrics") => Access::Needs(Role::Ingest),
        ("monitor.MonitorService", "GetMetrics") => Access::Needs(Role::Query),
        _ => Access::Needs(Role::Peer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_need_ingest_reads_need_query_and_the_unknown_needs_peer() {
        assert_eq!(
            routes("/ringwatch.v1.Ingest/Stream"),
            Access::Needs(Role::Ingest)
        );
        assert_eq!(
            routes("/monitor.MonitorService/SendMetrics"),
            Access::Needs(Role::Ingest)
        );
        for m in ["Range", "Latest", "Hosts", "Subscribe", "Cluster"] {
            assert_eq!(
                routes(&format!("/ringwatch.v1.Query/{m}")),
                Access::Needs(Role::Query)
            );
        }
        assert_eq!(
            routes("/monitor.MonitorService/GetMetrics"),
            Access::Needs(Role::Query)
        );
        assert_eq!(routes("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(routes("/grpc.health.v1.Health/Watch"), Access::Open);
        assert_eq!(
            routes("/ringwatch.v1.Admin/Join"),
            Access::Needs(Role::Peer)
        );
        assert_eq!(
            routes("/ringwatch.v1.Query/Drop"),
            Access::Needs(Role::Peer)
        );
        for rpc in [
            "/ringwatch.v1.Raft/AppendEntries",
            "/ringwatch.v1.Raft/Write",
            "/ringwatch.v1.Peer/Forward",
            "/ringwatch.v1.Peer/LocalRange",
        ] {
            assert_eq!(routes(rpc), Access::Needs(Role::Peer), "{rpc}");
        }
        assert_eq!(routes("garbage"), Access::Needs(Role::Peer));
    }
}
