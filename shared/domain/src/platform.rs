//! Platforms and their operating-system versions.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::wire_enum::wire_enum;

wire_enum! {
    /// The operating system family of a managed device (Graph's `operatingSystem`).
    pub enum Platform {
        Ios => "iOS",
        IPadOs => "iPadOS",
        MacOs => "macOS",
        Android => "Android",
        Windows => "Windows",
    }
}

impl Platform {
    /// Platforms managed through Apple's MDM protocol.
    pub const fn is_apple(self) -> bool {
        matches!(self, Self::Ios | Self::IPadOs | Self::MacOs)
    }

    /// The adapter that owns this platform's transport.
    pub const fn family(self) -> PlatformFamily {
        match self {
            Self::Ios | Self::IPadOs | Self::MacOs => PlatformFamily::Apple,
            Self::Android => PlatformFamily::Android,
            Self::Windows => PlatformFamily::Windows,
        }
    }
}

wire_enum! {
    /// The three transports: one adapter each.
    pub enum PlatformFamily {
        Apple => "apple",
        Android => "android",
        Windows => "windows",
    }
}

/// An operating-system version: up to four dot-separated numbers, as devices report them
/// (`17.4.1`, `10.0.16299.125`, `14`). Missing trailing parts count as zero when
/// comparing, so `10.0` equals `10.0.0`.
#[derive(Clone, Copy)]
pub struct OsVersion {
    parts: [u32; 4],
    len: u8,
}

/// The text is not an OS version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an OS version (expected numbers separated by dots, such as 10.0.16299)")]
pub struct InvalidOsVersion(pub String);

impl OsVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            parts: [major, minor, patch, 0],
            len: 3,
        }
    }

    /// A Windows 10 or 11 version from its build number (`10.0.<build>`).
    pub const fn windows_build(build: u32) -> Self {
        Self {
            parts: [10, 0, build, 0],
            len: 3,
        }
    }

    pub const fn major(&self) -> u32 {
        self.parts[0]
    }

    pub const fn minor(&self) -> u32 {
        self.parts[1]
    }

    /// The third number: the build on Windows 10 and later (`10.0.16299` → 16299).
    pub const fn build(&self) -> u32 {
        self.parts[2]
    }

    /// The Windows build number, when this is a Windows 10 or later version.
    pub const fn windows_10_build(&self) -> Option<u32> {
        if self.parts[0] == 10 && self.len >= 3 {
            Some(self.parts[2])
        } else {
            None
        }
    }

    fn significant(&self) -> &[u32] {
        &self.parts
    }
}

impl FromStr for OsVersion {
    type Err = InvalidOsVersion;

    /// Parses `a[.b[.c[.d]]]`. Surrounding white space is ignored, and so is a suffix that
    /// some devices append after a space (`14.5 (23F79)`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidOsVersion(s.to_owned());
        let core = s.split_whitespace().next().ok_or_else(invalid)?;
        let mut parts = [0u32; 4];
        let mut len = 0u8;
        for piece in core.split('.') {
            let slot = parts.get_mut(usize::from(len)).ok_or_else(invalid)?;
            if piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            *slot = piece.parse().map_err(|_| invalid())?;
            len += 1;
        }
        Ok(Self { parts, len })
    }
}

impl fmt::Display for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.parts[..usize::from(self.len.max(1))];
        for (i, part) in shown.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{part}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OsVersion({self})")
    }
}

impl PartialEq for OsVersion {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}

impl Eq for OsVersion {}

impl PartialOrd for OsVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OsVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.significant().cmp(other.significant())
    }
}

impl std::hash::Hash for OsVersion {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.significant().hash(state);
    }
}

impl Serialize for OsVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Windows 10 and 11 feature updates by marketing name, with their build numbers.
const WINDOWS_RELEASES: &[(&str, u32)] = &[
    ("1507", 10240),
    ("1511", 10586),
    ("1607", 14393),
    ("1703", 15063),
    ("1709", 16299),
    ("1803", 17134),
    ("1809", 17763),
    ("1903", 18362),
    ("1909", 18363),
    ("2004", 19041),
    ("20H2", 19042),
    ("21H1", 19043),
    ("21H2", 19044),
    ("22H2", 19045),
    // Windows 11
    ("11-21H2", 22000),
    ("11-22H2", 22621),
    ("11-23H2", 22631),
    ("11-24H2", 26100),
];

/// The build number of a Windows release name such as `1709` (16299) or `11-23H2`.
pub fn windows_release_build(name: &str) -> Option<u32> {
    WINDOWS_RELEASES
        .iter()
        .find(|(release, _)| release.eq_ignore_ascii_case(name))
        .map(|&(_, build)| build)
}

/// Windows 10 version 1709 (Fall Creators Update), the first build on which a factory
/// reset can keep the enrollment and the user's data (`doWipePersistUserData`).
pub const WINDOWS_1709_BUILD: u32 = 16299;

/// An Android API level (SDK_INT): 29 for Android 10, 34 for Android 14.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AndroidApiLevel(pub u32);

/// Android releases with the API level each introduced. Where a release has minor
/// versions with their own level (5.1, 7.1, 8.1), the minor version is listed.
const ANDROID_RELEASES: &[((u32, u32), u32)] = &[
    ((4, 4), 19),
    ((5, 0), 21),
    ((5, 1), 22),
    ((6, 0), 23),
    ((7, 0), 24),
    ((7, 1), 25),
    ((8, 0), 26),
    ((8, 1), 27),
    ((9, 0), 28),
    ((10, 0), 29),
    ((11, 0), 30),
    ((12, 0), 31),
    ((13, 0), 33),
    ((14, 0), 34),
    ((15, 0), 35),
    ((16, 0), 36),
];

impl AndroidApiLevel {
    /// The API level of an Android release version (`8.1.0` → 27, `14` → 34): the level of
    /// the newest listed release not newer than `version`.
    pub fn from_release(version: &OsVersion) -> Option<Self> {
        ANDROID_RELEASES
            .iter()
            .rev()
            .find(|((major, minor), _)| (version.major(), version.minor()) >= (*major, *minor))
            .map(|&(_, level)| Self(level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> OsVersion {
        s.parse().unwrap()
    }

    #[test]
    fn parses_what_devices_report() {
        assert_eq!(v("17.4.1").to_string(), "17.4.1");
        assert_eq!(v("10.0.16299.125").to_string(), "10.0.16299.125");
        assert_eq!(v("14").to_string(), "14");
        assert_eq!(v(" 14.5 (23F79)").to_string(), "14.5");
    }

    #[test]
    fn refuses_what_is_not_a_version() {
        for bad in ["", "abc", "1..2", "1.2.3.4.5", "-1", "1.x", "99999999999"] {
            assert!(bad.parse::<OsVersion>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn orders_numerically_not_textually() {
        assert!(v("10.0.9200") < v("10.0.16299"));
        assert!(v("10.0.16299") < v("10.0.16299.1"));
        assert!(v("9.3.5") < v("10.1"));
        assert_eq!(v("10.0"), v("10.0.0"));
        assert!(v("15.1") > v("15.0.99"));
    }

    #[test]
    fn windows_builds() {
        assert_eq!(v("10.0.16299.15").windows_10_build(), Some(16299));
        assert_eq!(v("8.1").windows_10_build(), None);
        assert_eq!(windows_release_build("1709"), Some(WINDOWS_1709_BUILD));
        assert_eq!(windows_release_build("20h2"), Some(19042));
        assert_eq!(windows_release_build("1234"), None);
        assert!(OsVersion::windows_build(17134) > OsVersion::windows_build(WINDOWS_1709_BUILD));
        // Release names are listed in build order.
        assert!(WINDOWS_RELEASES.windows(2).all(|w| w[0].1 < w[1].1));
    }

    #[test]
    fn android_api_levels() {
        assert_eq!(
            AndroidApiLevel::from_release(&v("8.1.0")),
            Some(AndroidApiLevel(27))
        );
        assert_eq!(
            AndroidApiLevel::from_release(&v("8.0")),
            Some(AndroidApiLevel(26))
        );
        assert_eq!(
            AndroidApiLevel::from_release(&v("14")),
            Some(AndroidApiLevel(34))
        );
        assert_eq!(
            AndroidApiLevel::from_release(&v("12.1")),
            Some(AndroidApiLevel(31))
        );
        assert_eq!(AndroidApiLevel::from_release(&v("4.1")), None);
        assert!(AndroidApiLevel(29) < AndroidApiLevel(30));
    }

    #[test]
    fn platforms_have_stable_names() {
        assert_eq!(Platform::IPadOs.to_string(), "iPadOS");
        assert_eq!("macos".parse::<Platform>().unwrap(), Platform::MacOs);
        assert!("symbian".parse::<Platform>().is_err());
        assert_eq!(Platform::MacOs.family(), PlatformFamily::Apple);
        assert_eq!(
            serde_json::to_string(&Platform::Ios).unwrap(),
            "\"iOS\"".to_owned()
        );
    }
}
