/// The virtio-serial ports of a sparc VM, by the names QEMU gives them and the guest finds
/// them under (/sys/class/virtio-ports/*/name): one place for host and agent.
public enum VirtioPortName {
    /// The agent's request channel.
    public static let agent = "org.sparc.agent.0"
    /// The rollback-sensitive data store.
    public static let rsdm = "org.sparc.rsdm.0"
}
