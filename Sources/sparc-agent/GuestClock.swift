#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif
import CSparcGuest
import GuestQuery

#if canImport(Glibc)
    import Glibc
#endif

/// The guest's wall clock, stepped to the host's after a restore.
///
/// A restored guest wakes at the time it was saved; TLS validity, cron, Kerberos tickets and
/// log timestamps then lie until something steps the clock. The host's time is the truth here:
/// the clock and the RTC (read again at the next boot) are both set from it.
enum GuestClock {
    static func set(to setting: ClockSetting) throws -> ClockResult {
        var before = timespec()
        clock_gettime(CLOCK_REALTIME, &before)
        let seconds = setting.unixNanoseconds / 1_000_000_000
        let nanoseconds = setting.unixNanoseconds % 1_000_000_000
        var target = timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds))
        guard clock_settime(CLOCK_REALTIME, &target) == 0 else {
            throw AgentFailure(.failed, "cannot set the guest clock: \(String(cString: strerror(errno)))")
        }
        let step = Double(setting.unixNanoseconds) / 1e9 - (Double(before.tv_sec) + Double(before.tv_nsec) / 1e9)
        let rc = sparc_set_rtc(Int64(seconds))
        return ClockResult(stepSeconds: step, rtcError: rc == 0 ? nil : "cannot set the RTC: \(String(cString: strerror(rc)))")
    }
}
