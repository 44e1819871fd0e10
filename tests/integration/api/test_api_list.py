"""GET /sandbox/list pages: limit and after (a cursor: the last sandbox_id of the previous
page) walk the whole list in its order, oldest first, once each; bad values are refused."""
from .test_api_errors import err


def ids(page):
    return [s["sandbox_id"] for s in page["sandboxes"]]


def walk(d, query, limit):
    seen, after, pages = [], None, 0
    while True:
        q = f"/sandbox/list?limit={limit}" + (f"&after={after}" if after else "") + query
        page = d.get(q).json()
        assert page["count"] == len(page["sandboxes"]) <= limit
        seen += ids(page)
        pages += 1
        after = page["next"]
        if after is None:
            return seen, pages
        assert after == seen[-1]


def test_list_pages(own_sbxd):
    d = own_sbxd("--pool-size", "0")
    made = [d.create() for _ in range(5)]
    whole = d.get("/sandbox/list").json()
    assert ids(whole) == made and whole["next"] is None
    for limit in (1, 2, 5, 1000):
        seen, pages = walk(d, "", limit)
        assert seen == made, (limit, seen)
        assert pages == -(-5 // limit)  # a full last page already says next: null
    # a cursor that ended between two pages of the running ones still marks the place
    first = d.get("/sandbox/list?status=running&limit=2").json()
    assert ids(first) == made[:2]
    assert d.post("/sandbox/terminate", {"sandbox_id": made[1]}).status_code == 200
    second = d.get(f"/sandbox/list?status=running&limit=2&after={made[1]}").json()
    assert ids(second) == made[2:4] and second["next"] == made[3]
    third = d.get(f"/sandbox/list?status=running&limit=2&after={made[3]}").json()
    assert ids(third) == made[4:] and third["next"] is None
    terminated = d.get("/sandbox/list?status=terminated&limit=10").json()
    assert ids(terminated) == [made[1]] and terminated["next"] is None


def test_list_refuses_bad_paging(sbxd):
    for q in ("limit=0", "limit=1001", "limit=-1", "limit=x", "limit=", "limit=1.5",
              "limit=01000", "limit=99999999999999999999"):
        assert "limit" in err(sbxd.get("/sandbox/list?" + q), 400, "invalid_request"), q
    for q in ("after=", "after=nope", "after=sb_00000000000000000000", "after=../x"):
        assert "after" in err(sbxd.get("/sandbox/list?" + q), 400, "invalid_request"), q
