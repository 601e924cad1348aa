"""Which site a citizen meant: typed without accents, in another order, with or without the usual
prefixes, never guessing between two sites."""

from __future__ import annotations

import pytest

from registry_client.embedded.demo import SITES
from registry_client.models import Site
from registry_client.routing import match_site, route_case, site_candidates

NEIGHBOURS = (
    *SITES,
    Site("HCM08", "Trạm Y tế Phường Tân Phú, Quận 7", "TP Hồ Chí Minh"),
    Site("HCM09", "Trạm Y tế Phường Tân Thuận Đông, Quận 7", "TP Hồ Chí Minh"),
)


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("Tram y te Tan Phong", "HCM07"),  # no accents, prefix kept
        ("tân phong", "HCM07"),  # prefix dropped
        ("Phong Tan", "HCM07"),  # word order
        ("Phuong Tan Phong Quan 7", "HCM07"),
        ("TTYT Hai Chau", "DN003"),  # "TTYT" stands for "Trung tâm Y tế"
        ("bv bach mai", "HN002"),
        ("hcm07", "HCM07"),  # the code, any case
        ("Trạm Y tế Phường Dịch Vọng", "HN001"),  # exactly as registered
    ],
)
def test_one_site_is_matched_without_doubt(typed: str, code: str) -> None:
    site = match_site(typed, SITES)
    assert site is not None and site.code == code
    assert [s.code for s in site_candidates(typed, SITES)] == [code]


@pytest.mark.parametrize("typed", ["tram y te", "benh vien", "phuong", "xyz", "", "   "])
def test_generic_or_unknown_words_match_nothing(typed: str) -> None:
    assert match_site(typed, SITES) is None
    assert site_candidates(typed, SITES) == []


def test_a_name_close_to_several_sites_offers_them_best_first_and_routes_to_none() -> None:
    assert match_site("tram y te tan quan 7", NEIGHBOURS) is None  # never a guess between sites
    offered = [s.code for s in site_candidates("tram y te tan quan 7", NEIGHBOURS)]
    assert sorted(offered) == ["HCM07", "HCM08", "HCM09"]
    assert [s.code for s in site_candidates("Tan Phu", NEIGHBOURS)][0] == "HCM08"
    assert match_site("Tan Phu", NEIGHBOURS) is not None and match_site("Tan Phu", NEIGHBOURS).code == "HCM08"


def test_routing_uses_the_forgiving_match() -> None:
    assert route_case("Tram y te Tan Phong", SITES, []) == "HCM07"
    assert route_case("somewhere else", SITES, []) is None  # no dose on record: the hotline queue
