"""The console's navigation table (`pages.NAVIGATION`, which the browser tests and the console benchmark find
pages by) is the navigation of the shell they load: static/index.html's `<nav aria-label="Pages">`, link for link,
in its order. No browser: the HTML is parsed as the console serves it."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

from spendstream.console.assets import STATIC
from spendstream.console.pages import NAVIGATION, PAGES


@dataclass(frozen=True)
class Link:
    page: str | None  # data-page
    href: str | None
    name: str  # the link's text, as a person reads it


class NavigationLinks(HTMLParser):
    """The links inside `<nav aria-label="Pages">`, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[Link] = []
        self._navs = 0  # depth inside the navigation (nested <nav> elements count)
        self._link: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "nav" and (self._navs or dict(attrs).get("aria-label") == "Pages"):
            self._navs += 1
        elif tag == "a" and self._navs:
            self._link, self._text = dict(attrs), []

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav" and self._navs:
            self._navs -= 1
        elif tag == "a" and self._link is not None:
            name = " ".join("".join(self._text).split())
            self.links.append(Link(self._link.get("data-page"), self._link.get("href"), name))
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._text.append(data)


def links_of(html: str) -> list[Link]:
    parser = NavigationLinks()
    parser.feed(html)
    parser.close()
    return parser.links


def test_the_navigation_table_is_the_shells_navigation_link_for_link() -> None:
    links = links_of((STATIC / "index.html").read_text())
    assert [(link.page, link.name) for link in links] == list(NAVIGATION.items())
    # Each link leads to its page's own path, one the console serves.
    assert [link.href for link in links] == [f"/{page}" for page in NAVIGATION]
    assert set(NAVIGATION) <= set(PAGES)


def test_the_parser_sees_a_renamed_moved_or_extra_link() -> None:
    shell = """<header><a class="brand" href="/overview">spendstream</a>
      <nav aria-label="Pages"><ul>
        <li><a href="/explore" data-page="explore">Explore
          data</a></li>
        <li><a href="/overview" data-page="overview"><span>Over</span>view</a></li>
      </ul></nav><nav aria-label="Elsewhere"><a href="/account">Account</a></nav></header>"""
    assert links_of(shell) == [
        Link("explore", "/explore", "Explore data"),
        Link("overview", "/overview", "Overview"),
    ]
