"""Every message a user can see has a Chinese translation."""

from openmvno.i18n import from_accept_language, translate
from openmvno.i18n.extract import all_messages, missing


def test_every_message_is_translated_to_chinese() -> None:
    assert len(all_messages()) > 40
    assert missing() == []


def test_placeholders_survive_translation() -> None:
    assert translate("zh-CN", "The code is wrong; {left} attempts left.", left=3) == "验证码错误，还可尝试 3 次。"
    assert translate("en", "The code is wrong; {left} attempts left.", left=3) == "The code is wrong; 3 attempts left."


def test_accept_language_negotiation() -> None:
    assert from_accept_language("en-US,en;q=0.9,zh;q=0.8") == "en"
    assert from_accept_language("fr-FR, zh-TW;q=0.5") == "zh-CN"
    assert from_accept_language("fr-FR", default="en") == "en"
