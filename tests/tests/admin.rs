//! The router's admin page (issue 7) in the lab: LAN only, with WAN status, NAT counters, DHCP
//! leases with host names, UPnP mappings that can be deleted from the page, and the same data as
//! JSON.

use tests::{Lab, LabOptions, RouterKind, require_root};

#[test]
fn admin_page_shows_the_router_and_deletes_a_mapping() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Ours).cams(2)).expect("lab up");
    let wan = lab.wan_addr();
    let cam1 = lab.addr("cam1").to_string();
    lab.http_server("cam1", &cam1, 8080, "/etc/iproute2");
    lab.sh(
        "cam1",
        &format!("upnpc -i -e 'porch \"cam\"' -a {cam1} 8080 8080 TCP"),
    );
    assert!(
        lab.try_sh(
            "inet",
            &format!("curl -sf -m 3 -o /dev/null http://{wan}:8080/")
        )
        .0
    );

    let page = lab.sh(
        "viewer",
        "curl -sS -m 5 --fail-with-body http://192.168.1.1/",
    );
    assert!(
        page.contains("homenet router") && page.contains(&wan.to_string()),
        "WAN status"
    );
    assert!(
        page.contains("port-restricted") || page.contains("home"),
        "the NAT preset"
    );
    assert!(
        page.contains("porch &quot;cam&quot;"),
        "the mapping, escaped"
    );
    assert!(
        page.contains("cam1") && page.contains("cam2"),
        "DHCP leases with host names:\n{page}"
    );
    let admin = lab.sh(
        "viewer",
        "curl -sS -m 5 --fail-with-body http://192.168.1.1/api/admin",
    );
    let v: serde_json::Value = serde_json::from_str(&admin).expect("JSON");
    assert!(
        v["status"]["dhcp"]["leases"]
            .as_array()
            .is_some_and(|l| l.len() >= 3),
        "{admin}"
    );
    assert!(
        !v["sessions_summary"]
            .as_array()
            .expect("summary")
            .is_empty()
    );

    // Delete from the page (the form's POST, with the page's token), although cam1 owns it
    // and secure mode is on. Without the token (a form on another site) it is refused.
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the form carries a token");
    let code = lab.sh(
        "viewer",
        "curl -sS -m 5 -o /dev/null -w '%{http_code}' -d 'protocol=tcp&port=8080' http://192.168.1.1/admin/mappings/delete",
    );
    assert_eq!(code.trim(), "403");
    assert!(
        lab.sh("viewer", "curl -sS -m 5 http://192.168.1.1/")
            .contains("porch")
    );
    let code = lab.sh(
        "viewer",
        &format!("curl -sS -m 5 -o /dev/null -w '%{{http_code}}' -d 'protocol=tcp&port=8080&csrf={token}' http://192.168.1.1/admin/mappings/delete"),
    );
    assert_eq!(code.trim(), "303");
    assert!(
        !lab.sh("viewer", "curl -sS -m 5 http://192.168.1.1/")
            .contains("porch")
    );
    assert!(
        !lab.try_sh(
            "inet",
            &format!("curl -sf -m 2 -o /dev/null http://{wan}:8080/")
        )
        .0,
        "port closed"
    );

    // Not from the internet.
    assert!(
        !lab.try_sh("inet", &format!("curl -sf -m 2 -o /dev/null http://{wan}/"))
            .0
    );
    lab.sh("inet", &format!("ip route add 192.168.1.0/24 via {wan}"));
    assert!(
        !lab.try_sh("inet", "curl -sf -m 2 -o /dev/null http://192.168.1.1/")
            .0
    );
}
