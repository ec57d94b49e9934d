import betterproto2
from meshlet.destination.address import Address, AddressSet
from meshlet.destination.translator import (
    add_update,
    no_endpoints_update,
    remove_update,
)

ALICE = "spiffe://cluster.local/ns/shop/sa/web"


def test_add_with_identity_and_labels():
    meshed = Address("198.18.0.5", 8080, pod="web-1", namespace="shop", service_account="web", identity=ALICE,
                     labels={"app": "web", "version": "v2", "other": "x"})
    plain = Address("198.18.0.4", 8080, pod="web-0", namespace="shop", service_account="default")
    update = add_update(AddressSet.of([meshed, plain], {"dst_service": "web", "dst_namespace": "shop"}))
    assert betterproto2.which_one_of(update, "update")[0] == "add"
    addrs = update.add.addrs
    assert [(a.addr.ip, a.addr.port) for a in addrs] == [("198.18.0.4", 8080), ("198.18.0.5", 8080)]
    assert all(a.weight == 10000 for a in addrs)
    assert addrs[0].tls_identity is None
    assert addrs[1].tls_identity.uri == ALICE
    assert addrs[1].tls_identity.server_name == "web.shop.serviceaccount.identity.cluster.local"
    assert addrs[1].metric_labels == {"pod": "web-1", "namespace": "shop", "serviceaccount": "web",
                                      "app": "web", "version": "v2"}
    assert update.add.metric_labels == {"dst_service": "web", "dst_namespace": "shop"}
    # survives the wire
    again = type(update)().parse(bytes(update))
    assert again.add.addrs[1].tls_identity.uri == ALICE


def test_remove_and_no_endpoints():
    update = remove_update(AddressSet.of([Address("198.18.0.5", 8080)]))
    assert betterproto2.which_one_of(update, "update")[0] == "remove"
    assert [(a.ip, a.port) for a in update.remove.addrs] == [("198.18.0.5", 8080)]
    for exists in (True, False):
        update = no_endpoints_update(exists)
        name, value = betterproto2.which_one_of(update, "update")
        assert name == "no_endpoints" and value.exists is exists
