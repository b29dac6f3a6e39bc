"""PII redaction: each kind is found, validated and replaced; ordinary numbers survive."""

from __future__ import annotations

import pytest

from persona_studio.clean.pii import Redactor, id_card_ok, luhn_ok


def _id_with_checksum(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]


VALID_ID = _id_with_checksum("11010519491231002")  # ends in X
VALID_ID2 = _id_with_checksum("44030419900307123")


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("我的手机13812345678，打给我", "我的手机<PHONE>，打给我", "phone"),
        ("call +86 138 1234 5678 ok", "call <PHONE> ok", "phone"),
        ("call +1 415 555 2671 now", "call <PHONE> now", "phone"),
        ("tel +44 20 7946 0958.", "tel <PHONE>.", "phone"),
        ("座机 010-12345678", "座机 <PHONE>", "phone"),
        ("(415) 555-2671 is mine", "<PHONE> is mine", "phone"),
        (f"身份证{VALID_ID}。", "身份证<ID>。", "id_card"),
        (f"id {VALID_ID2.lower()} here", "id <ID> here", "id_card"),
        ("card 4111111111111111 thanks", "card <BANK_CARD> thanks", "bank_card"),
        ("卡号 4111 1111 1111 1111 收到", "卡号 <BANK_CARD> 收到", "bank_card"),
        ("mail john.smith+x@mail.example.co.uk.", "mail <EMAIL>.", "email"),
        ("see https://example.com/a?b=1&c=2, ok", "see <URL>, ok", "url"),
        ("访问baidu.com/s看看", "访问<URL>看看", "url"),
        ("(见 www.qq.com)", "(见 <URL>)", "url"),
        ("server 192.168.1.10.", "server <IP>.", "ip"),
        ("v6 fe80::1ff:fe23:4567:890a ok", "v6 <IP> ok", "ip"),
        ("loopback ::1 and 2001:db8::8a2e:370:7334", "loopback ::1 and <IP>", "ip"),
    ],
)
def test_each_kind_is_redacted_with_its_placeholder(text: str, expected: str, kind: str) -> None:
    out, counts = Redactor({}).apply(text)
    assert out == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "价格 1999 元，2024年10月4日 11:42，共 3 个",
        "meet at 12:30:45 tomorrow, 3.5 km, v2.0.1",
        "订单号 20241004114210 和 100000",
        "epoch ms 1700000000000",
        "2024-10-04 11:42:10",
        "card 4111111111111112 (bad Luhn)",
        f"{VALID_ID[:17]}{'0' if VALID_ID[17] != '0' else '1'} (bad checksum)",
        "version 1.2.3 and 999.1.1.1",
        "¥ 12,345.67 and +5 points",
        "no digits at all here",
    ],
)
def test_ordinary_numbers_survive(text: str) -> None:
    assert Redactor({}).apply(text) == (text, {})


def test_counts_per_kind_and_several_hits() -> None:
    text = "a 13812345678 b 13912345678 c x@y.com d http://a.cn"
    out, counts = Redactor({}).apply(text)
    assert out == "a <PHONE> b <PHONE> c <EMAIL> d <URL>"
    assert counts == {"phone": 2, "email": 1, "url": 1}


def test_drop_action_drops_the_message_keep_action_leaves_it() -> None:
    assert Redactor({"phone": "drop"}).apply("打13812345678") == (None, {"phone": 1})
    # keep: URLs are not even looked for, so the email inside the text is still redacted
    out, counts = Redactor({"url": "keep"}).apply("see http://a.com or x@y.com")
    assert out == "see http://a.com or <EMAIL>"
    assert counts == {"email": 1}
    everything_kept = Redactor({k: "keep" for k in ("phone", "id_card", "email", "url", "bank_card", "ip")})
    assert everything_kept.apply("13812345678 x@y.com") == ("13812345678 x@y.com", {})


def test_settings_object_is_accepted() -> None:
    from persona_studio.settings import PiiArgs

    r = Redactor(PiiArgs(email="drop"))
    assert r.apply("x@y.com")[0] is None
    assert r.apply("13812345678")[0] == "<PHONE>"


def test_validators() -> None:
    assert id_card_ok(VALID_ID) and id_card_ok(VALID_ID2)
    assert not id_card_ok(VALID_ID2[:17] + str((int(VALID_ID2[17]) + 1) % 10) if VALID_ID2[17].isdigit() else "0")
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")
