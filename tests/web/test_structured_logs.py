import json
import logging

import pytest

from web.structured_logs import JsonFormatter, MaskPersonalData, mask_text


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("sms from +84901234567", "sms from 09******67"),
        ("call 0912345678 now", "call 09******78 now"),
        ("login 079190004321 ok", "login 079******321 ok"),
        ("cmnd 123456789", "cmnd 123***789"),
        ("sent code 483920 to it", "sent code ****** to it"),
        ("mã: 111222", "mã: ******"),
        ('"GET /c/eyJwIjoiMTIzIn0.abcDEF123_-x/qr.png HTTP/1.1" 200', '"GET /c/<token>/qr.png HTTP/1.1" 200'),
        ("nothing personal here, 2021-08-02", "nothing personal here, 2021-08-02"),
    ],
)
def test_mask_text(raw: str, masked: str) -> None:
    assert mask_text(raw) == masked


def test_records_are_masked_json() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "OTP for %s is code %s", ("+84987654321", "123456"), None)
    assert MaskPersonalData().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "OTP for 09******21 is code ******"
    assert line["level"] == "info"
