"""The few words the Telegram adapter says itself (everything else comes from the engine)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "vi": {
        "foreign_contact": (
            "Vì lý do an toàn, tôi chỉ nhận số điện thoại của chính bạn. "
            "Vui lòng bấm nút «Chia sẻ số điện thoại của tôi» bên dưới."
        ),
        "unusable_phone": (
            "Số điện thoại này không dùng được để đăng nhập. Bạn có thể nhập số CCCD/CMND để tiếp tục."
        ),
        "unsupported": "Tôi chỉ đọc được tin nhắn chữ, nút bấm và ảnh. Gõ /help để xem các lệnh.",
        "private_only": "Vui lòng nhắn riêng cho tôi để bảo vệ thông tin tiêm chủng của bạn.",
        "contact_button": "📱 Chia sẻ số điện thoại của tôi",
        "contact_hint": "Hoặc bấm nút bên dưới để chia sẻ số điện thoại của bạn.",
        "error": "Xin lỗi, hệ thống đang gặp sự cố. Vui lòng thử lại sau ít phút.",
        "chosen": "Đã chọn",
    },
    "en": {
        "foreign_contact": (
            "For your safety I only accept your own phone number. "
            "Please press the «Share my phone number» button below."
        ),
        "unusable_phone": "This phone number cannot be used to log in. You can type your national ID instead.",
        "unsupported": "I can read text, buttons and photos only. Send /help to see the commands.",
        "private_only": "Please message me privately to keep your vaccination data safe.",
        "contact_button": "📱 Share my phone number",
        "contact_hint": "Or press the button below to share your phone number.",
        "error": "Sorry, something went wrong on our side. Please try again in a few minutes.",
        "chosen": "Chosen",
    },
}


def text(key: str, language: str) -> str:
    return TEXTS.get(language, TEXTS["vi"])[key]
