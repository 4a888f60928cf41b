//! NAPT translation engine (RFC 3022, behaviours of RFC 4787 / RFC 5382). Sans-IO.
