//! Everything that touches a chain: escrow client, settlers, ENS (issue 4).
