"""User-facing text of the certificate pages (/c/…, /verify): Vietnamese (default) and English."""

from __future__ import annotations

from datetime import date

LANGUAGES = ("vi", "en")

TEXTS: dict[str, dict[str, str]] = {
    "vi": {
        "site": "Sổ tiêm chủng",
        "other_lang": "English",
        "cert_title": "Chứng nhận tiêm chủng COVID-19",
        "name": "Họ và tên",
        "dob": "Ngày sinh",
        "doses": "Các mũi đã tiêm",
        "dose": "Mũi",
        "date": "Ngày tiêm",
        "vaccine": "Vắc xin",
        "lot": "Số lô",
        "site_code": "Nơi tiêm",
        "qr_alt": "Mã QR chứng nhận tiêm chủng",
        "qr_hint": "Đưa mã QR này cho nơi kiểm tra quét. Mã theo chuẩn EU DCC.",
        "download": "Tải ảnh mã QR",
        "print": "In chứng nhận",
        "certificate_id": "Số định danh chứng nhận (UVCI)",
        "certificate_code_hint": "Khác với mã chứng nhận 12 ký tự gửi qua SMS (nhắn MA).",
        "booster": "nhắc lại",
        "filed_as": "hồ sơ ghi là mũi {n}",
        "missing_doses": "Hồ sơ chưa có mũi {numbers}: các mũi được đếm theo thứ tự ngày tiêm. Nếu bạn đã tiêm mũi này, hãy nhắn PA để báo thiếu mũi.",
        "valid_until": "Có giá trị đến",
        "link_note": "Liên kết này hết hạn ngày {date}. Không chia sẻ liên kết với người khác.",
        "no_dose_title": "Chưa có mũi tiêm nào được ghi nhận",
        "no_dose_body": "Hệ thống chưa có mũi tiêm nào của bạn. Nếu bạn đã tiêm, hãy nhắn PA để báo thiếu mũi.",
        "invalid_title": "Liên kết không hợp lệ",
        "invalid_body": "Liên kết này không đúng hoặc đã bị thay đổi. Nhắn QR để nhận liên kết mới.",
        "expired_title": "Liên kết đã hết hạn",
        "expired_body": "Vì an toàn, liên kết chỉ dùng được trong ít ngày. Nhắn QR để nhận liên kết mới.",
        "unavailable_title": "Tạm thời chưa lấy được dữ liệu",
        "unavailable_body": "Hệ thống sổ tiêm chủng đang bận. Vui lòng thử lại sau ít phút.",
        "verify_title": "Kiểm tra chứng nhận tiêm chủng",
        "tab_paste": "Dán mã HC1",
        "tab_photo": "Ảnh mã QR",
        "tab_code": "Mã chứng nhận",
        "paste_label": "Chuỗi bắt đầu bằng HC1:",
        "photo_label": "Chụp hoặc chọn ảnh mã QR",
        "check": "Kiểm tra",
        "result_valid": "HỢP LỆ",
        "result_invalid": "KHÔNG HỢP LỆ",
        "holder": "Người được chứng nhận",
        "country": "Nước",
        "no_qr_found": "Không tìm thấy mã QR trong ảnh. Hãy chụp lại rõ và thẳng hơn.",
        "not_an_image": "Tệp tải lên không phải là ảnh.",
        "image_too_large": "Ảnh quá lớn (tối đa 10 MB).",
        "image_too_many_pixels": "Ảnh có độ phân giải quá lớn (tối đa 4000 × 4000 điểm ảnh, 4 megapixel). "
        "Hãy chụp lại ở độ phân giải thấp hơn hoặc cắt sát mã QR.",
        "busy": "Hệ thống đang bận đọc ảnh khác. Vui lòng thử lại sau vài giây.",
        "nothing_to_check": "Hãy dán chuỗi HC1 hoặc chọn ảnh mã QR.",
    },
    "en": {
        "site": "Vaccination record",
        "other_lang": "Tiếng Việt",
        "cert_title": "COVID-19 vaccination certificate",
        "name": "Name",
        "dob": "Date of birth",
        "doses": "Doses received",
        "dose": "Dose",
        "date": "Date",
        "vaccine": "Vaccine",
        "lot": "Lot",
        "site_code": "Site",
        "qr_alt": "Vaccination certificate QR code",
        "qr_hint": "Show this QR code at a checkpoint. It follows the EU DCC standard.",
        "download": "Download the QR image",
        "print": "Print the certificate",
        "certificate_id": "Certificate identifier (UVCI)",
        "certificate_code_hint": "Not the same as the 12-character certificate code sent by SMS (text CODE).",
        "booster": "booster",
        "filed_as": "filed as dose {n}",
        "missing_doses": "Dose {numbers} is not on record: your doses are counted in the order given. If you had it, text REPORT to report it.",
        "valid_until": "Valid until",
        "link_note": "This link expires on {date}. Do not share it.",
        "no_dose_title": "No dose on record yet",
        "no_dose_body": "The registry has no dose for you yet. If you were vaccinated, text REPORT to report it.",
        "invalid_title": "This link is not valid",
        "invalid_body": "The link is wrong or was changed. Text CERT to get a new link.",
        "expired_title": "This link has expired",
        "expired_body": "For your safety links work for a few days only. Text CERT to get a new link.",
        "unavailable_title": "Your record cannot be loaded right now",
        "unavailable_body": "The vaccination registry is busy. Please try again in a few minutes.",
        "verify_title": "Check a vaccination certificate",
        "tab_paste": "Paste HC1",
        "tab_photo": "QR photo",
        "tab_code": "Certificate code",
        "paste_label": "Text starting with HC1:",
        "photo_label": "Take or choose a photo of the QR code",
        "check": "Check",
        "result_valid": "VALID",
        "result_invalid": "NOT VALID",
        "holder": "Holder",
        "country": "Country",
        "no_qr_found": "No QR code found in the photo. Take it again, sharper and straight on.",
        "not_an_image": "The uploaded file is not an image.",
        "image_too_large": "The image is too large (10 MB at most).",
        "image_too_many_pixels": "The photo has too many pixels (4000 × 4000 and 4 megapixels at most). "
        "Take it at a lower resolution or crop it to the QR code.",
        "busy": "The service is busy reading other photos. Please try again in a few seconds.",
        "nothing_to_check": "Paste an HC1 string or choose a photo of a QR code.",
    },
}

# Verification reasons (certificates.verification codes) as a checkpoint officer reads them.
REASONS: dict[str, dict[str, str]] = {
    "vi": {
        "valid": "Chữ ký hợp lệ, chứng nhận còn hiệu lực.",
        "input too large": "Dữ liệu quá dài, không phải chứng nhận.",
        "not HC1": "Không phải mã chứng nhận EU DCC (thiếu tiền tố HC1:).",
        "bad base45": "Mã bị hỏng (lỗi mã hóa base45).",
        "bad zlib": "Mã bị hỏng (lỗi nén dữ liệu).",
        "not COSE": "Mã bị hỏng (không phải dữ liệu ký COSE).",
        "wrong tag": "Mã bị hỏng (sai loại dữ liệu ký).",
        "schema": "Nội dung chứng nhận không đúng cấu trúc.",
        "unknown signer": "Không rõ đơn vị ký: không thể xác thực chữ ký.",
        "bad signature": "Chữ ký không hợp lệ: chứng nhận có thể đã bị sửa.",
        "signer not allowed": "Đơn vị ký không được phép ký loại chứng nhận này.",
        "expired": "Chứng nhận đã hết hạn.",
        "not yet valid": "Chứng nhận chưa có hiệu lực.",
        "revoked": "Chứng nhận đã bị thu hồi (đã cấp chứng nhận mới thay thế).",
        "could not be checked": "Chưa kiểm tra được, vui lòng thử lại.",
        "bad request": "Yêu cầu không hợp lệ.",
    },
    "en": {
        "valid": "Signature verified; the certificate is in force.",
        "input too large": "Too much data: this is not a certificate.",
        "not HC1": "Not an EU DCC certificate (no HC1: prefix).",
        "bad base45": "Damaged code (base45 encoding).",
        "bad zlib": "Damaged code (compression).",
        "not COSE": "Damaged code (not a COSE signed message).",
        "wrong tag": "Damaged code (wrong kind of signed message).",
        "schema": "The certificate content is malformed.",
        "unknown signer": "Unknown signer: the signature cannot be checked.",
        "bad signature": "Invalid signature: the certificate may have been altered.",
        "signer not allowed": "The signer may not sign this kind of certificate.",
        "expired": "The certificate has expired.",
        "not yet valid": "The certificate is not valid yet.",
        "revoked": "The certificate was revoked (a newer certificate replaces it).",
        "could not be checked": "Could not be checked; please try again.",
        "bad request": "Invalid request.",
    },
}


def language(requested: str | None, accept_language: str | None = None) -> str:
    """`requested` (?lang=) when it is one of ours; else the browser's first choice of ours; else vi."""
    if requested in LANGUAGES:
        return requested
    for part in (accept_language or "")[:200].split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "vi"


def format_date(value: date | str | None, lang: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            return value  # partial dates of foreign certificates ("1964", "1964-08")
    else:
        parsed = value
    return parsed.strftime("%d/%m/%Y") if lang == "vi" else parsed.isoformat()
