"""HCERT (EU DCC) certificates: signing, verification, QR rendering, short certificate codes."""
