from tests.console.conftest import *  # noqa

def test_smoke(console):
    c = console.as_user("lan")
    r = c.client.get("/agent/search?national_id=001085012345&dob=14/03/1985")
    print(r.status_code, r.url)
    assert r.status_code == 200, r.text[:3000]
    r = c.client.get("/agent/search?phone=0938111222")
    assert r.status_code == 200
    assert r.text.count("/agent/persons/") == 3, r.text
    r = c.client.get("/agent/queue")
    assert r.status_code == 200, r.text[:2000]
    c.as_user("minh")
    r = c.client.get("/agent/queue")
    assert r.status_code == 200, r.text[:2000]
    print(r.text[-3000:])
    c.as_user("quan")
    for u in ["/agent/admin", "/agent/admin/users", "/agent/admin/sites", "/agent/admin/sla", "/agent/admin/outbox", "/agent/notifications", "/agent/queue"]:
        r = c.client.get(u)
        assert r.status_code == 200, (u, r.text[:3000])
