"""The HTTP routes of the SMS/USSD channel (included by app.py)."""

from __future__ import annotations

from fastapi import APIRouter

from sms_gateway import twilio, upload, ussd, voice

router = APIRouter()
router.include_router(twilio.router)
router.include_router(ussd.router)
router.include_router(upload.router)
router.include_router(voice.router)
