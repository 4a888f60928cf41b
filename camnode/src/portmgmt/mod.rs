//! Port management against the router's IGD (server patent claims 1, 2, 5, 6, 17-19).
