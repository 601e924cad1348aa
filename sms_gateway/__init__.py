"""SMS (Twilio) and USSD (Africa's Talking format) adapters, the outbox sender, the simulator."""
