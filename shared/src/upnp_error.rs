//! UPnP error codes, with the numbers and descriptions the specifications give them.
//!
//! - 401..606: UPnP Device Architecture 1.1 §3.2.2 ("Control: Action Response: Error", the
//!   table of standard error codes), also UDA 2.0 §3.2.2; 404 Invalid Var is the
//!   QueryStateVariable error of UDA 1.0 §3.3.2.
//! - 7xx: WANIPConnection:2 (UPnP IGD:2, 2010) §2.4, the "Error Codes" table of each action.
//!   703..711 belong to the connection actions (RequestConnection, ForceTermination,
//!   RequestTermination, SetConnectionType); 713..733 to the port-mapping actions.
//!
//! A fault carries `errorCode` and `errorDescription` (see [`crate::soap`]); the description
//! strings below are the spec's names, which clients such as miniupnpc print verbatim.

use std::fmt;

/// A UPnP error that an action can return in a SOAP fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpnpError {
    /// 401: no action by that name at this service (UDA 1.1 §3.2.2).
    InvalidAction,
    /// 402: not enough in-args, args in the wrong order, or of the wrong type (UDA 1.1 §3.2.2).
    InvalidArgs,
    /// 404: QueryStateVariable for a variable this service does not have (UDA 1.0 §3.3.2).
    InvalidVar,
    /// 501: the action failed for a reason the other codes do not cover (UDA 1.1 §3.2.2).
    ActionFailed,
    /// 600: an argument value is invalid (UDA 1.1 §3.2.2).
    ArgumentValueInvalid,
    /// 601: an argument value is out of range (UDA 1.1 §3.2.2).
    ArgumentValueOutOfRange,
    /// 602: an optional action that this device does not implement (UDA 1.1 §3.2.2).
    OptionalActionNotImplemented,
    /// 603: out of memory (UDA 1.1 §3.2.2).
    OutOfMemory,
    /// 604: human intervention required (UDA 1.1 §3.2.2).
    HumanInterventionRequired,
    /// 605: a string argument is too long (UDA 1.1 §3.2.2).
    StringArgumentTooLong,
    /// 606: the caller may not do this (UDA 1.1 §3.2.2; WANIPConnection:2 uses it for
    /// secure mode: a control point acting on another host's mapping).
    ActionNotAuthorized,
    /// 703: SetConnectionType requires the connection to be inactive (WANIPConnection:1 §2.4.1).
    InactiveConnectionStateRequired,
    /// 704: RequestConnection could not set the connection up (WANIPConnection:2 §2.4).
    ConnectionSetupFailed,
    /// 705: a connection set-up is already in progress (WANIPConnection:2 §2.4).
    ConnectionSetupInProgress,
    /// 706: the connection is not configured (WANIPConnection:2 §2.4).
    ConnectionNotConfigured,
    /// 707: a disconnect is in progress (WANIPConnection:2 §2.4).
    DisconnectInProgress,
    /// 708: invalid layer 2 address (WANIPConnection:1 §2.4).
    InvalidLayer2Address,
    /// 709: internet access is disabled (WANIPConnection:1 §2.4).
    InternetAccessDisabled,
    /// 710: the connection type does not allow this (WANIPConnection:2 §2.4).
    InvalidConnectionType,
    /// 711: the connection is already terminated (WANIPConnection:2 §2.4).
    ConnectionAlreadyTerminated,
    /// 713: GetGenericPortMappingEntry index past the end (WANIPConnection:2 §2.4.14).
    SpecifiedArrayIndexInvalid,
    /// 714: no mapping with these key values (WANIPConnection:2 §2.4.15, §2.4.17).
    NoSuchEntryInArray,
    /// 715: the remote host may not be a wildcard (WANIPConnection:2 §2.4.16).
    WildCardNotPermittedInSrcIp,
    /// 716: the external port may not be a wildcard (WANIPConnection:2 §2.4.16).
    WildCardNotPermittedInExtPort,
    /// 718: the mapping conflicts with one held by another client (WANIPConnection:2 §2.4.16).
    ConflictInMappingEntry,
    /// 724: internal and external port must be equal (WANIPConnection:2 §2.4.16).
    SamePortValuesRequired,
    /// 725: only permanent leases are supported (WANIPConnection:1 §2.4.16; not used in :2).
    OnlyPermanentLeasesSupported,
    /// 726: the remote host must be a wildcard (WANIPConnection:2 §2.4.16).
    RemoteHostOnlySupportsWildcard,
    /// 727: the external port must be a wildcard (WANIPConnection:2 §2.4.16).
    ExternalPortOnlySupportsWildcard,
    /// 728: no port mapping available, e.g. a limit is reached (WANIPConnection:2 §2.4.16, §2.4.18).
    NoPortMapsAvailable,
    /// 729: conflicts with another mechanism, e.g. a static forward (WANIPConnection:2 §2.4.16).
    ConflictWithOtherMechanisms,
    /// 730: no mapping in the given range (WANIPConnection:2 §2.4.18, §2.4.20).
    PortMappingNotFound,
    /// 731: the mapping is read-only (WANIPConnection:2 §2.4.16).
    ReadOnly,
    /// 732: the internal port may not be a wildcard (WANIPConnection:2 §2.4.16).
    WildCardNotPermittedInIntPort,
    /// 733: the parameters are inconsistent, e.g. start port above end port
    /// (WANIPConnection:2 §2.4.18, §2.4.20).
    InconsistentParameters,
}

/// Every variant, in code order (for tables and tests).
pub const ALL: [UpnpError; 35] = {
    use UpnpError::*;
    [
        InvalidAction,
        InvalidArgs,
        InvalidVar,
        ActionFailed,
        ArgumentValueInvalid,
        ArgumentValueOutOfRange,
        OptionalActionNotImplemented,
        OutOfMemory,
        HumanInterventionRequired,
        StringArgumentTooLong,
        ActionNotAuthorized,
        InactiveConnectionStateRequired,
        ConnectionSetupFailed,
        ConnectionSetupInProgress,
        ConnectionNotConfigured,
        DisconnectInProgress,
        InvalidLayer2Address,
        InternetAccessDisabled,
        InvalidConnectionType,
        ConnectionAlreadyTerminated,
        SpecifiedArrayIndexInvalid,
        NoSuchEntryInArray,
        WildCardNotPermittedInSrcIp,
        WildCardNotPermittedInExtPort,
        ConflictInMappingEntry,
        SamePortValuesRequired,
        OnlyPermanentLeasesSupported,
        RemoteHostOnlySupportsWildcard,
        ExternalPortOnlySupportsWildcard,
        NoPortMapsAvailable,
        ConflictWithOtherMechanisms,
        PortMappingNotFound,
        ReadOnly,
        WildCardNotPermittedInIntPort,
        InconsistentParameters,
    ]
};

impl UpnpError {
    /// The numeric `errorCode`.
    pub const fn code(self) -> u16 {
        use UpnpError::*;
        match self {
            InvalidAction => 401,
            InvalidArgs => 402,
            InvalidVar => 404,
            ActionFailed => 501,
            ArgumentValueInvalid => 600,
            ArgumentValueOutOfRange => 601,
            OptionalActionNotImplemented => 602,
            OutOfMemory => 603,
            HumanInterventionRequired => 604,
            StringArgumentTooLong => 605,
            ActionNotAuthorized => 606,
            InactiveConnectionStateRequired => 703,
            ConnectionSetupFailed => 704,
            ConnectionSetupInProgress => 705,
            ConnectionNotConfigured => 706,
            DisconnectInProgress => 707,
            InvalidLayer2Address => 708,
            InternetAccessDisabled => 709,
            InvalidConnectionType => 710,
            ConnectionAlreadyTerminated => 711,
            SpecifiedArrayIndexInvalid => 713,
            NoSuchEntryInArray => 714,
            WildCardNotPermittedInSrcIp => 715,
            WildCardNotPermittedInExtPort => 716,
            ConflictInMappingEntry => 718,
            SamePortValuesRequired => 724,
            OnlyPermanentLeasesSupported => 725,
            RemoteHostOnlySupportsWildcard => 726,
            ExternalPortOnlySupportsWildcard => 727,
            NoPortMapsAvailable => 728,
            ConflictWithOtherMechanisms => 729,
            PortMappingNotFound => 730,
            ReadOnly => 731,
            WildCardNotPermittedInIntPort => 732,
            InconsistentParameters => 733,
        }
    }

    /// The `errorDescription`, as the specification names the error.
    pub const fn description(self) -> &'static str {
        use UpnpError::*;
        match self {
            InvalidAction => "Invalid Action",
            InvalidArgs => "Invalid Args",
            InvalidVar => "Invalid Var",
            ActionFailed => "Action Failed",
            ArgumentValueInvalid => "Argument Value Invalid",
            ArgumentValueOutOfRange => "Argument Value Out of Range",
            OptionalActionNotImplemented => "Optional Action Not Implemented",
            OutOfMemory => "Out of Memory",
            HumanInterventionRequired => "Human Intervention Required",
            StringArgumentTooLong => "String Argument Too Long",
            ActionNotAuthorized => "Action not authorized",
            InactiveConnectionStateRequired => "InactiveConnectionStateRequired",
            ConnectionSetupFailed => "ConnectionSetupFailed",
            ConnectionSetupInProgress => "ConnectionSetupInProgress",
            ConnectionNotConfigured => "ConnectionNotConfigured",
            DisconnectInProgress => "DisconnectInProgress",
            InvalidLayer2Address => "InvalidLayer2Address",
            InternetAccessDisabled => "InternetAccessDisabled",
            InvalidConnectionType => "InvalidConnectionType",
            ConnectionAlreadyTerminated => "ConnectionAlreadyTerminated",
            SpecifiedArrayIndexInvalid => "SpecifiedArrayIndexInvalid",
            NoSuchEntryInArray => "NoSuchEntryInArray",
            WildCardNotPermittedInSrcIp => "WildCardNotPermittedInSrcIP",
            WildCardNotPermittedInExtPort => "WildCardNotPermittedInExtPort",
            ConflictInMappingEntry => "ConflictInMappingEntry",
            SamePortValuesRequired => "SamePortValuesRequired",
            OnlyPermanentLeasesSupported => "OnlyPermanentLeasesSupported",
            RemoteHostOnlySupportsWildcard => "RemoteHostOnlySupportsWildcard",
            ExternalPortOnlySupportsWildcard => "ExternalPortOnlySupportsWildcard",
            NoPortMapsAvailable => "NoPortMapsAvailable",
            ConflictWithOtherMechanisms => "ConflictWithOtherMechanisms",
            PortMappingNotFound => "PortMappingNotFound",
            ReadOnly => "ReadOnly",
            WildCardNotPermittedInIntPort => "WildCardNotPermittedInIntPort",
            InconsistentParameters => "InconsistentParameters",
        }
    }

    /// The error for a numeric code, if it is one of ours.
    pub fn from_code(code: u16) -> Option<UpnpError> {
        ALL.iter().copied().find(|e| e.code() == code)
    }
}

impl fmt::Display for UpnpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.description())
    }
}

impl std::error::Error for UpnpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for e in ALL {
            assert_eq!(UpnpError::from_code(e.code()), Some(e));
        }
        assert_eq!(UpnpError::from_code(999), None);
        let mut codes: Vec<u16> = ALL.iter().map(|e| e.code()).collect();
        codes.dedup();
        assert_eq!(
            codes.len(),
            ALL.len(),
            "ALL is sorted by code and has no duplicates"
        );
    }

    #[test]
    fn spec_names() {
        assert_eq!(
            UpnpError::ConflictInMappingEntry.to_string(),
            "718 ConflictInMappingEntry"
        );
        assert_eq!(UpnpError::SpecifiedArrayIndexInvalid.code(), 713);
        assert_eq!(
            UpnpError::ActionNotAuthorized.description(),
            "Action not authorized"
        );
    }
}
