//! Tests of the mapping table with a virtual clock: `t0` plus offsets, never the real time.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use shared::igd::{MappingKey, Protocol};
use shared::natpmp::{NatPmpResult, PcpResult};
use shared::upnp_error::UpnpError;

use super::persist;
use super::*;

const CAM1: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 100);
const CAM2: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 101);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn add_req(caller: Ipv4Addr, version: u32, port: u16, lease: u32) -> AddRequest {
    AddRequest {
        caller,
        version,
        remote_host: None,
        external_port: port,
        protocol: Protocol::Tcp,
        internal_port: port,
        internal_client: None,
        enabled: true,
        description: format!("hnib cam {port}"),
        lease,
    }
}

fn key(port: u16) -> MappingKey {
    MappingKey {
        remote_host: None,
        external_port: port,
        protocol: Protocol::Tcp,
    }
}

fn table() -> MappingTable {
    MappingTable::new(TableConfig::default())
}

#[test]
fn v1_lease_zero_is_permanent_v2_is_a_week() {
    let t0 = Instant::now();
    let mut t = table();
    t.add(t0, &add_req(CAM1, 1, 8080, 0)).unwrap();
    t.add(t0, &add_req(CAM1, 2, 8081, 0)).unwrap();
    t.add(t0, &add_req(CAM1, 2, 8082, 10_000_000)).unwrap();
    assert_eq!(t.get_specific(t0, &key(8080)).unwrap().lease_end, None);
    assert_eq!(
        t.get_specific(t0, &key(8081)).unwrap().lease_end,
        Some(t0 + secs(604_800))
    );
    assert_eq!(
        t.get_specific(t0, &key(8082)).unwrap().lease_end,
        Some(t0 + secs(604_800))
    );
    // NewLeaseDuration reports 0 for permanent and the remaining seconds otherwise
    assert_eq!(
        t.get_specific(t0, &key(8080)).unwrap().remaining_secs(t0),
        0
    );
    let m = t.get_specific(t0 + secs(100), &key(8081)).unwrap();
    assert_eq!(m.remaining_secs(t0 + secs(100)), 604_700);
    assert_eq!(
        m.remaining_secs(t0 + Duration::from_millis(100_500)),
        604_700
    );
}

/// Reads skip the expiry scan until a lease may have ended; deletions, renewals to a shorter
/// lease and PCP / NAT-PMP mappings keep that bound right.
#[test]
fn expiry_bound_follows_every_change() {
    let t0 = Instant::now();
    let mut t = table();
    t.add(t0, &add_req(CAM1, 2, 8080, 100)).unwrap();
    t.add(t0, &add_req(CAM1, 2, 8081, 50)).unwrap();
    // the earliest one goes: nothing to expire at its old end, the next at its own
    t.delete(t0, CAM1, &key(8081)).unwrap();
    assert!(t.expire(t0 + secs(50)).is_empty());
    assert_eq!(t.len(t0 + secs(99)), 1);
    // a renewal to a shorter lease
    t.add(t0 + secs(10), &add_req(CAM1, 2, 8080, 20)).unwrap();
    assert_eq!(t.len(t0 + secs(29)), 1);
    assert_eq!(t.len(t0 + secs(30)), 0);
    // a NAT-PMP mapping
    let g = t
        .map_pmp(
            t0,
            &PmpRequest {
                origin: Origin::NatPmp,
                client: CAM2,
                protocol: Protocol::Udp,
                internal_port: 5000,
                suggested_port: 5000,
                lifetime: 60,
                nonce: None,
            },
        )
        .unwrap();
    assert_eq!(g.lifetime, 60);
    assert_eq!(t.len(t0 + secs(59)), 1);
    assert!(t.get_generic(t0 + secs(60), 0).is_err());
}

#[test]
fn expiry_and_deadline() {
    let t0 = Instant::now();
    let mut t = table();
    assert_eq!(t.next_deadline(), None);
    t.add(t0, &add_req(CAM1, 2, 8080, 3600)).unwrap();
    t.add(t0, &add_req(CAM1, 2, 8081, 60)).unwrap();
    t.add(t0, &add_req(CAM1, 1, 8082, 0)).unwrap();
    assert_eq!(t.next_deadline(), Some(t0 + secs(60)));
    t.take_changes();
    assert!(t.expire(t0 + secs(59)).is_empty());
    let gone = t.expire(t0 + secs(60));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].external_port, 8081);
    assert_eq!(
        t.take_changes(),
        vec![Change::Removed(gone[0].clone(), RemoveReason::Expired)]
    );
    assert_eq!(t.next_deadline(), Some(t0 + secs(3600)));
    assert_eq!(t.len(t0 + secs(7200)), 1, "the permanent one stays");
    assert_eq!(t.next_deadline(), None);
    // reads expire implicitly: a walk never sees a lapsed mapping
    t.add(t0, &add_req(CAM1, 2, 9000, 10)).unwrap();
    assert_eq!(
        t.get_specific(t0 + secs(10), &key(9000)),
        Err(TableError::NotFound)
    );
}

#[test]
fn renewal_by_adding_again() {
    let t0 = Instant::now();
    let mut t = table();
    t.add(t0, &add_req(CAM1, 2, 8080, 3600)).unwrap();
    t.take_changes();
    let t1 = t0 + secs(1800);
    let mut again = add_req(CAM1, 2, 8080, 3600);
    again.internal_port = 80;
    again.description = "renamed".into();
    t.add(t1, &again).unwrap();
    let m = t.get_specific(t1, &key(8080)).unwrap();
    assert_eq!(m.lease_end, Some(t1 + secs(3600)));
    assert_eq!(m.internal_port, 80);
    assert_eq!(m.description, "renamed");
    let changes = t.take_changes();
    assert!(
        matches!(&changes[..], [Change::Updated { old, new }] if old.internal_port == 8080 && new.internal_port == 80)
    );
    assert_eq!(t.len(t1), 1);
}

#[test]
fn overwrite_rule_same_client_updates_other_client_718() {
    let t0 = Instant::now();
    for version in [1, 2] {
        let mut t = table();
        t.add(t0, &add_req(CAM1, version, 8080, 3600)).unwrap();
        let e = t.add(t0, &add_req(CAM2, version, 8080, 3600)).unwrap_err();
        assert_eq!(e, TableError::Conflict);
        assert_eq!(e.upnp_error(version), UpnpError::ConflictInMappingEntry);
        // the other protocol on the same port is a different mapping
        let mut udp = add_req(CAM2, version, 8080, 3600);
        udp.protocol = Protocol::Udp;
        t.add(t0, &udp).unwrap();
        // same client but another remote host: conflict too (one forward per port)
        let mut rh = add_req(CAM1, version, 8080, 3600);
        rh.remote_host = Some(Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(t.add(t0, &rh), Err(TableError::Conflict));
    }
}

#[test]
fn secure_mode_maps_only_to_self() {
    let t0 = Instant::now();
    let mut t = table();
    let mut for_other = add_req(CAM1, 1, 8080, 0);
    for_other.internal_client = Some(CAM2);
    let e = t.add(t0, &for_other).unwrap_err();
    assert_eq!(e, TableError::NotAuthorized);
    assert_eq!(
        e.upnp_error(1),
        UpnpError::ConflictInMappingEntry,
        "miniupnpd's v1 answer"
    );
    assert_eq!(e.upnp_error(2), UpnpError::ActionNotAuthorized);
    // explicitly naming oneself is fine
    let mut me = add_req(CAM1, 2, 8080, 0);
    me.internal_client = Some(CAM1);
    t.add(t0, &me).unwrap();
    // secure mode off: any LAN host may map for any other (some consumer routers)
    t.set_secure_mode(false);
    for_other.external_port = 8081;
    t.add(t0, &for_other).unwrap();
    let m = t.get_specific(t0, &key(8081)).unwrap();
    assert_eq!((m.internal_client, m.owner), (CAM2, CAM1));
}

#[test]
fn delete_secure_and_not_found() {
    let t0 = Instant::now();
    let mut t = table();
    t.add(t0, &add_req(CAM1, 2, 8080, 3600)).unwrap();
    let e = t.delete(t0, CAM2, &key(8080)).unwrap_err();
    assert_eq!(e.upnp_error(2), UpnpError::ActionNotAuthorized);
    assert_eq!(
        t.delete(t0, CAM1, &key(9999)).unwrap_err().upnp_error(2),
        UpnpError::NoSuchEntryInArray
    );
    // a named remote host must match
    let rk = MappingKey {
        remote_host: Some(Ipv4Addr::new(1, 2, 3, 4)),
        ..key(8080)
    };
    assert_eq!(t.delete(t0, CAM1, &rk), Err(TableError::NotFound));
    t.take_changes();
    let m = t.delete(t0, CAM1, &key(8080)).unwrap();
    assert_eq!(
        t.take_changes(),
        vec![Change::Removed(m, RemoveReason::Deleted)]
    );
    // secure mode off: the successor representative may delete the old 8080 (patent flow)
    t.add(t0, &add_req(CAM1, 2, 8080, 3600)).unwrap();
    t.set_secure_mode(false);
    t.delete(t0, CAM2, &key(8080)).unwrap();
    assert!(t.is_empty());
}

#[test]
fn generic_walk_is_dense_until_713() {
    let t0 = Instant::now();
    let mut t = table();
    for p in [8080, 8081, 8082] {
        t.add(t0, &add_req(CAM1, 2, p, 3600)).unwrap();
    }
    t.delete(t0, CAM1, &key(8081)).unwrap();
    let walk: Vec<u16> = (0..)
        .map_while(|i| t.get_generic(t0, i).ok())
        .map(|m| m.external_port)
        .collect();
    assert_eq!(walk, vec![8080, 8082]);
    let e = t.get_generic(t0, 2).unwrap_err();
    assert_eq!(e.upnp_error(1), UpnpError::SpecifiedArrayIndexInvalid);
    assert_eq!(t.get_generic(t0, u32::MAX), Err(TableError::IndexInvalid));
    assert_eq!(
        t.get_specific(t0, &key(8081)).unwrap_err().upnp_error(2),
        UpnpError::NoSuchEntryInArray
    );
}

#[test]
fn walking_1000_mappings() {
    let t0 = Instant::now();
    let mut t = MappingTable::new(TableConfig {
        max_per_client: 2000,
        ..TableConfig::default()
    });
    for p in 0..1000u16 {
        t.add(t0, &add_req(CAM1, 2, 10_000 + p, 3600)).unwrap();
    }
    let n = (0..).map_while(|i| t.get_generic(t0, i).ok()).count();
    assert_eq!(n, 1000);
}

#[test]
fn delete_range_with_manage_flag() {
    let t0 = Instant::now();
    let mut t = table();
    for p in [8080, 8081, 8082] {
        t.add(t0, &add_req(CAM1, 2, p, 3600)).unwrap();
    }
    t.add(t0, &add_req(CAM2, 2, 8083, 3600)).unwrap();
    assert_eq!(
        t.delete_range(t0, CAM1, Protocol::Tcp, 9, 1, false),
        Err(TableError::Inconsistent)
    );
    assert_eq!(
        t.delete_range(t0, CAM1, Protocol::Tcp, 8000, 9000, true)
            .unwrap_err()
            .upnp_error(2),
        UpnpError::ActionNotAuthorized,
        "manage needs authorisation; secure mode withholds it"
    );
    assert_eq!(
        t.delete_range(t0, CAM1, Protocol::Udp, 8000, 9000, false)
            .unwrap_err()
            .upnp_error(2),
        UpnpError::PortMappingNotFound
    );
    let gone = t
        .delete_range(t0, CAM1, Protocol::Tcp, 8081, 9000, false)
        .unwrap();
    assert_eq!(
        gone.iter().map(|m| m.external_port).collect::<Vec<_>>(),
        vec![8081, 8082]
    );
    assert_eq!(t.len(t0), 2);
    t.set_secure_mode(false);
    let gone = t
        .delete_range(t0, CAM1, Protocol::Tcp, 0, 65535, true)
        .unwrap();
    assert_eq!(gone.len(), 2);
}

#[test]
fn list_by_range_sorted_capped_730() {
    let t0 = Instant::now();
    let mut t = MappingTable::new(TableConfig {
        max_per_client: 2000,
        max_total: 2000,
        ..TableConfig::default()
    });
    for p in (0..1200u16).rev() {
        t.add(t0, &add_req(CAM1, 2, 20_000 + p, 3600)).unwrap();
    }
    t.add(t0, &add_req(CAM2, 2, 8080, 3600)).unwrap();
    let all = t.list(t0, CAM1, Protocol::Tcp, 0, 65535, true, 0).unwrap();
    assert_eq!(all.len(), 1000, "capped at 1000");
    assert_eq!(all[0].external_port, 8080, "sorted by port");
    let own = t.list(t0, CAM2, Protocol::Tcp, 0, 65535, false, 0).unwrap();
    assert_eq!(own.len(), 1);
    let few = t
        .list(t0, CAM1, Protocol::Tcp, 20_000, 20_010, false, 5)
        .unwrap();
    assert_eq!(
        few.iter().map(|e| e.external_port).collect::<Vec<_>>(),
        (20_000..20_005).collect::<Vec<_>>()
    );
    assert_eq!(few[0].lease_duration, 3600);
    assert_eq!(
        t.list(t0, CAM1, Protocol::Udp, 0, 65535, true, 0)
            .unwrap_err()
            .upnp_error(2),
        UpnpError::PortMappingNotFound
    );
    assert_eq!(
        t.list(t0, CAM1, Protocol::Tcp, 2, 1, true, 0)
            .unwrap_err()
            .upnp_error(2),
        UpnpError::InconsistentParameters
    );
}

#[test]
fn limits_728() {
    let t0 = Instant::now();
    let mut t = MappingTable::new(TableConfig {
        max_total: 3,
        max_per_client: 2,
        ..TableConfig::default()
    });
    t.add(t0, &add_req(CAM1, 2, 1001, 60)).unwrap();
    t.add(t0, &add_req(CAM1, 2, 1002, 60)).unwrap();
    let e = t.add(t0, &add_req(CAM1, 2, 1003, 60)).unwrap_err();
    assert_eq!(e.upnp_error(2), UpnpError::NoPortMapsAvailable);
    // renewal of an existing mapping is not a new one
    t.add(t0, &add_req(CAM1, 2, 1002, 60)).unwrap();
    t.add(t0, &add_req(CAM2, 2, 2001, 60)).unwrap();
    assert_eq!(
        t.add(t0, &add_req(CAM2, 2, 2002, 60)),
        Err(TableError::NoResources)
    );
    assert_eq!(
        t.add_any(t0, &add_req(CAM2, 2, 2002, 60)),
        Err(TableError::NoResources)
    );
    // also when the wanted port is taken and another would be searched for
    assert_eq!(
        t.add_any(t0, &add_req(CAM2, 2, 1001, 60)),
        Err(TableError::NoResources)
    );
    // expiry frees room
    t.add(t0 + secs(60), &add_req(CAM2, 2, 2002, 60)).unwrap();
}

#[test]
fn permission_rules_and_reserved_ports() {
    let t0 = Instant::now();
    let rules = Rules::parse(
        "allow 1024-65535 192.168.1.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
    )
    .unwrap();
    let cfg = TableConfig {
        rules,
        reserved: vec![(Some(Protocol::Tcp), 5000, 5000), (None, 1900, 1900)],
        ..TableConfig::default()
    };
    let mut t = MappingTable::new(cfg);
    let low = add_req(CAM1, 2, 80, 60);
    let e = t.add(t0, &low).unwrap_err();
    assert_eq!(e, TableError::Denied);
    assert_eq!(e.upnp_error(2), UpnpError::ActionNotAuthorized);
    assert_eq!(e.upnp_error(1), UpnpError::ConflictInMappingEntry);
    let e = t.add(t0, &add_req(CAM1, 2, 5000, 60)).unwrap_err();
    assert_eq!(e.upnp_error(2), UpnpError::ConflictWithOtherMechanisms);
    assert_eq!(e.upnp_error(1), UpnpError::ConflictInMappingEntry);
    let mut udp5000 = add_req(CAM1, 2, 5000, 60);
    udp5000.protocol = Protocol::Udp;
    t.add(t0, &udp5000).unwrap();
    // AddAnyPortMapping steers around the rule and the reservation
    let mut any = add_req(CAM1, 2, 5000, 60);
    any.internal_port = 5000;
    assert_eq!(t.add_any(t0, &any), Ok(5001));
}

#[test]
fn add_any_picks_nearest_free_port() {
    let t0 = Instant::now();
    let mut t = MappingTable::new(TableConfig {
        secure_mode: false,
        ..TableConfig::default()
    });
    t.add(t0, &add_req(CAM2, 2, 8080, 3600)).unwrap();
    t.add(t0, &add_req(CAM2, 2, 8081, 3600)).unwrap();
    // patent flow: 8080 is taken by another server, so the next free port is given
    assert_eq!(t.add_any(t0, &add_req(CAM1, 2, 8080, 3600)), Ok(8082));
    // upwards first
    assert_eq!(t.add_any(t0, &add_req(CAM1, 2, 8081, 3600)), Ok(8083));
    // the caller's own mapping on the wanted port is renewed, not moved
    assert_eq!(t.add_any(t0, &add_req(CAM1, 2, 8082, 3600)), Ok(8082));
    // 0 = any: start from the internal port
    let mut zero = add_req(CAM1, 2, 0, 3600);
    zero.internal_port = 9000;
    assert_eq!(t.add_any(t0, &zero), Ok(9000));
    // never below min_auto_port, and the top of the range wraps downwards
    let mut low = add_req(CAM1, 2, 0, 3600);
    low.internal_port = 22;
    assert_eq!(t.add_any(t0, &low), Ok(1024));
    // at the top of the range it searches downwards
    t.add(t0, &add_req(CAM2, 2, 65535, 3600)).unwrap();
    assert_eq!(t.add_any(t0, &add_req(CAM1, 2, 65535, 3600)), Ok(65534));
}

#[test]
fn add_any_exhaustion_is_728() {
    let t0 = Instant::now();
    let rules = Rules::parse("allow 60000-60001 0.0.0.0/0 0-65535\ndeny 0-65535 0.0.0.0/0 0-65535")
        .unwrap();
    let mut t = MappingTable::new(TableConfig {
        rules,
        ..TableConfig::default()
    });
    assert_eq!(t.add_any(t0, &add_req(CAM1, 2, 8080, 60)), Ok(60000));
    assert_eq!(t.add_any(t0, &add_req(CAM1, 2, 8081, 60)), Ok(60001));
    let e = t.add_any(t0, &add_req(CAM1, 2, 8082, 60)).unwrap_err();
    assert_eq!(e.upnp_error(2), UpnpError::NoPortMapsAvailable);
}

#[test]
fn port_zero_never_stored() {
    let t0 = Instant::now();
    let mut t = table();
    let e = t.add(t0, &add_req(CAM1, 2, 0, 60)).unwrap_err();
    assert_eq!(e.upnp_error(2), UpnpError::WildCardNotPermittedInExtPort);
}

#[test]
fn description_truncated_on_char_boundary() {
    let t0 = Instant::now();
    let mut t = MappingTable::new(TableConfig {
        max_description: 5,
        ..TableConfig::default()
    });
    let mut r = add_req(CAM1, 2, 8080, 60);
    r.description = "caméra".into();
    t.add(t0, &r).unwrap();
    assert_eq!(t.get_specific(t0, &key(8080)).unwrap().description, "camé");
}

fn pmp(client: Ipv4Addr, internal_port: u16, suggested: u16, lifetime: u32) -> PmpRequest {
    PmpRequest {
        client,
        origin: Origin::NatPmp,
        protocol: Protocol::Udp,
        internal_port,
        suggested_port: suggested,
        lifetime,
        nonce: None,
    }
}

#[test]
fn natpmp_map_renew_delete() {
    let t0 = Instant::now();
    let mut t = table();
    let g = t.map_pmp(t0, &pmp(CAM1, 5000, 5000, 7200)).unwrap();
    assert_eq!(
        g,
        PmpGrant {
            external_port: 5000,
            lifetime: 7200
        }
    );
    // another client suggesting the same port gets another one (RFC 6886 §3.3)
    let g2 = t.map_pmp(t0, &pmp(CAM2, 5000, 5000, 7200)).unwrap();
    assert_eq!(g2.external_port, 5001);
    // renewal keeps the port even with another suggestion; lifetime capped
    let g3 = t
        .map_pmp(t0 + secs(100), &pmp(CAM1, 5000, 6000, 1_000_000))
        .unwrap();
    assert_eq!(
        g3,
        PmpGrant {
            external_port: 5000,
            lifetime: 86_400
        }
    );
    // the UPnP view sees NAT-PMP mappings (one table)
    let m = t.get_generic(t0, 0).unwrap();
    assert_eq!((m.origin, m.internal_client), (Origin::NatPmp, CAM1));
    // a UPnP add from another client conflicts with it
    let mut u = add_req(CAM2, 2, 5000, 60);
    u.protocol = Protocol::Udp;
    assert_eq!(t.add(t0, &u), Err(TableError::Conflict));
    // delete: lifetime 0; internal port 0 deletes all of the client's UDP mappings
    t.map_pmp(t0, &pmp(CAM1, 5002, 0, 60)).unwrap();
    assert_eq!(
        t.map_pmp(t0, &pmp(CAM1, 5000, 0, 0)),
        Ok(PmpGrant {
            external_port: 0,
            lifetime: 0
        })
    );
    assert_eq!(t.len(t0), 2);
    t.map_pmp(t0, &pmp(CAM1, 0, 0, 0)).unwrap();
    assert_eq!(t.len(t0), 1);
    // limit reached
    let mut small = MappingTable::new(TableConfig {
        max_per_client: 1,
        ..TableConfig::default()
    });
    small.map_pmp(t0, &pmp(CAM1, 1, 0, 60)).unwrap();
    let e = small.map_pmp(t0, &pmp(CAM1, 2, 0, 60)).unwrap_err();
    assert_eq!(e.natpmp_result(), NatPmpResult::OutOfResources);
    assert_eq!(e.pcp_result(), PcpResult::NoResources);
}

#[test]
fn pcp_nonce_guards_the_mapping() {
    let t0 = Instant::now();
    let mut t = table();
    let req = PmpRequest {
        origin: Origin::Pcp,
        nonce: Some([7; 12]),
        ..pmp(CAM1, 80, 8080, 3600)
    };
    assert_eq!(t.map_pmp(t0, &req).unwrap().external_port, 8080);
    let other_nonce = PmpRequest {
        nonce: Some([8; 12]),
        ..req
    };
    let e = t.map_pmp(t0, &other_nonce).unwrap_err();
    assert_eq!(e.pcp_result(), PcpResult::NotAuthorized);
    // a delete with the wrong nonce is refused and leaves it (RFC 6887 §11.3)
    let e = t
        .map_pmp(
            t0,
            &PmpRequest {
                lifetime: 0,
                ..other_nonce
            },
        )
        .unwrap_err();
    assert_eq!(e.pcp_result(), PcpResult::NotAuthorized);
    assert_eq!(t.len(t0), 1);
    t.map_pmp(t0, &PmpRequest { lifetime: 0, ..req }).unwrap();
    assert_eq!(t.len(t0), 0);
}

#[test]
fn change_log_in_order_and_update_id() {
    let t0 = Instant::now();
    let mut t = table();
    t.add(t0, &add_req(CAM1, 2, 8080, 10)).unwrap();
    t.add(t0, &add_req(CAM1, 2, 8080, 10)).unwrap();
    t.delete(t0, CAM1, &key(8080)).unwrap();
    t.add(t0, &add_req(CAM2, 2, 8080, 10)).unwrap();
    t.expire(t0 + secs(10));
    let kinds: Vec<&str> = t
        .take_changes()
        .iter()
        .map(|c| match c {
            Change::Added(_) => "add",
            Change::Updated { .. } => "update",
            Change::Removed(_, RemoveReason::Deleted) => "delete",
            Change::Removed(_, RemoveReason::Expired) => "expire",
        })
        .collect();
    assert_eq!(kinds, ["add", "update", "delete", "add", "expire"]);
    assert_eq!(t.system_update_id(), 5);
    assert!(t.take_changes().is_empty());
    // an expired mapping is removed (logged) before another client takes its port
    t.add(t0, &add_req(CAM1, 2, 9000, 10)).unwrap();
    t.take_changes();
    t.add(t0 + secs(11), &add_req(CAM2, 2, 9000, 10)).unwrap();
    let c = t.take_changes();
    assert!(
        matches!(&c[..], [Change::Removed(old, RemoveReason::Expired), Change::Added(new)]
        if old.internal_client == CAM1 && new.internal_client == CAM2)
    );
}

#[test]
fn persistence_round_trip_with_remaining_lease() {
    let t0 = Instant::now();
    let mut t = table();
    let mut odd = add_req(CAM1, 2, 8080, 3600);
    odd.description = "cam 1 % é\n \"x\"".into();
    odd.remote_host = Some(Ipv4Addr::new(198, 51, 100, 10));
    t.add(t0, &odd).unwrap();
    t.add(t0, &add_req(CAM1, 1, 8081, 0)).unwrap();
    t.add(t0, &add_req(CAM2, 2, 8082, 100)).unwrap();
    t.map_pmp(
        t0,
        &PmpRequest {
            origin: Origin::Pcp,
            nonce: Some([0xab; 12]),
            ..pmp(CAM2, 53, 53, 600)
        },
    )
    .unwrap();
    let wall = 1_700_000_000;
    let text = persist::save(&t, t0 + secs(600), wall);
    assert!(text.starts_with("hnib-igd-mappings 1\nsaved-at 1700000000\n"));
    assert_eq!(
        text.lines().count(),
        2 + 2,
        "8082 (100 s) and the PCP one (600 s) have lapsed"
    );

    // the router restarts 1000 s of wall-clock time later, with a new Instant epoch
    let r0 = t0 + secs(50_000);
    let loaded = persist::load(&text, r0, wall + 1000).unwrap();
    let ports: Vec<u16> = loaded.iter().map(|m| m.external_port).collect();
    assert_eq!(ports, vec![8080, 8081]);
    let m = &loaded[0];
    assert_eq!(m.description, odd.description);
    assert_eq!(m.remote_host, odd.remote_host);
    assert_eq!(m.lease_end, Some(r0 + secs(3000 - 1000)));
    assert_eq!(loaded[1].lease_end, None);
    let mut fresh = table();
    assert_eq!(fresh.restore(r0, loaded), 2);
    assert_eq!(
        fresh.take_changes().len(),
        2,
        "restored mappings are installed into the NAT"
    );
    // a wall clock that went backwards counts as no time elapsed
    let back = persist::load(&text, r0, wall - 50).unwrap();
    assert_eq!(back[0].lease_end, Some(r0 + secs(3000)));
    // everything lapsed
    assert!(
        persist::load(&text, r0, wall + 10_000)
            .unwrap()
            .iter()
            .all(|m| m.lease_end.is_none())
    );
}

#[test]
fn persistence_keeps_pcp_nonce_and_rejects_garbage() {
    let t0 = Instant::now();
    let mut t = table();
    t.map_pmp(
        t0,
        &PmpRequest {
            origin: Origin::Pcp,
            nonce: Some([0x5a; 12]),
            ..pmp(CAM2, 53, 53, 600)
        },
    )
    .unwrap();
    let loaded = persist::load(&persist::save(&t, t0, 10), t0, 10).unwrap();
    assert_eq!(loaded[0].nonce, Some([0x5a; 12]));
    assert_eq!(loaded[0].origin, Origin::Pcp);
    let bad = [
        ("", 1),
        ("something else\n", 1),
        ("hnib-igd-mappings 1\n", 2),
        ("hnib-igd-mappings 1\nsaved-at x\n", 2),
        (
            "hnib-igd-mappings 1\nsaved-at 1\nTCP 1 * 1.2.3.4 1 1 upnp 1.2.3.4 permanent -\n",
            3,
        ),
        (
            "hnib-igd-mappings 1\nsaved-at 1\nSCTP 1 * 1.2.3.4 1 1 upnp 1.2.3.4 permanent - d\n",
            3,
        ),
        (
            "hnib-igd-mappings 1\nsaved-at 1\nTCP 0 * 1.2.3.4 1 1 upnp 1.2.3.4 permanent - d\n",
            3,
        ),
        (
            "hnib-igd-mappings 1\nsaved-at 1\nTCP 1 * 1.2.3.4 1 1 upnp 1.2.3.4 permanent zz d\n",
            3,
        ),
        (
            "hnib-igd-mappings 1\nsaved-at 1\nTCP 1 * 1.2.3.4 1 1 upnp 1.2.3.4 permanent - %G1\n",
            3,
        ),
        (
            "hnib-igd-mappings 1\nsaved-at 1\nTCP 1 * 1.2.3.4 1 2 upnp 1.2.3.4 permanent - d\n",
            3,
        ),
        (
            "hnib-igd-mappings 1\nsaved-at 1\nTCP 1 * 1.2.3.4 1 1 ftp 1.2.3.4 permanent - d\n",
            3,
        ),
    ];
    for (text, line) in bad {
        let e = persist::load(text, t0, 10).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
    }
}

#[test]
fn write_atomic_replaces_the_file() {
    let dir = std::env::temp_dir().join(format!("hnib-igd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mappings.state");
    persist::write_atomic(&path, b"one").unwrap();
    persist::write_atomic(&path, b"two").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert!(!dir.join("mappings.state.tmp").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
