import Foundation
import GuestQuery
import Hypervisor
import SparcSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The VM's disk chain.
///
/// A VM either writes through to a file of its own (`--disk FILE`, the per-VM copy of a
/// built Debian guest): a checkpoint puts an overlay on top for as long as it copies the
/// file's frozen state into the bundle, then commits the overlay back, so the file the
/// operator named keeps every write across stop and start. Or it writes into an overlay in
/// the runtime directory that stop discards (`--ephemeral`, the default busybox guest):
/// checkpoints stack overlays and the bundle holds the flattened frozen chain.
///
/// Crash safety: the file itself is only ever written by QEMU, and it is never in a state
/// another process writes to it (sparc holds QEMU's image locks on it). An overlay left by a
/// sparc killed between snapshot and commit is committed by the next command that changes
/// the VM (or offline with qemu-img when QEMU died too), and a file whose QEMU died is
/// checked and its leaked clusters repaired before it boots again.
extension VMManager {
    /// The disk chain a new VM starts on.
    func startDisk(_ options: StartOptions, image: GuestImage?, name: String, layout: RuntimeLayout) throws
        -> (disk: [DiskLayer], scratch: [String], persistent: String?)
    {
        var file = options.disk.map(FileSystem.absolute)
        var persistent = file != nil && !options.ephemeral
        if file == nil, let image {
            if image.kind == .debian && !options.ephemeral {
                // The VM's own copy of the built image: its writes persist, the build stays clean.
                let own = registry.ownedDiskPath(for: name, stateDirectory: stateDirectory)
                if !FileSystem.exists(own) { try copyImage(image.disk, to: own) }
                file = own
                persistent = true
            } else {
                file = image.disk
            }
        }
        guard let file else { return ([], [], nil) }
        var st = stat()
        guard stat(file, &st) == 0 else { throw SparcError("disk image \(file) does not exist") }
        // A FIFO or a character device (/dev/zero) is no disk: QEMU would wait on it or fail obscurely.
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw SparcError("disk image \(file) is not a regular file (a qcow2 or raw image file)") }
        let (format, size) = try imageInfo(file)
        if persistent {
            guard access(file, R_OK | W_OK) == 0 else { throw SparcError("disk image \(file) is not writable (pass --ephemeral to discard the VM's writes)") }
            return ([DiskLayer(path: file, format: format, writable: true, followsOwnBacking: true, virtualSize: size)], [], file)
        }
        let base = DiskLayer(path: file, format: format, writable: false, followsOwnBacking: true, virtualSize: size)
        let overlay = layout.directory + "/disk-1.qcow2"
        try createOverlay(overlay, on: base)
        return ([base, DiskLayer(path: overlay, format: "qcow2", writable: true, virtualSize: size, serial: 1)], [overlay], nil)
    }

    /// A standalone copy of an image (sparse), made under a temporary name and renamed.
    func copyImage(_ source: String, to destination: String) throws {
        try FileSystem.makeDirectories(Path.directory(of: destination))
        let staging = try StagingDirectory(beside: destination)
        let r = try Subprocess.run([try QEMUProcess.locateQemuImg(), "convert", "-q", "-U", "-O", "qcow2", source, staging.file])
        guard r.status == 0 else { throw SparcError("cannot copy disk image \(source): \(r.stderrSummary)") }
        try staging.moveIntoPlace(replace: false)
    }

    /// Puts a new qcow2 overlay on top of the disk chain (the VM must be paused).
    func addOverlay(_ state: inout VMState, qmp: QMPClient, layout: RuntimeLayout) throws {
        let layer = try prepareOverlay(&state, qmp: qmp, layout: layout)
        try switchToOverlay(layer, &state, qmp: qmp, layout: layout)
    }

    /// Makes the next overlay while the guest runs, so that a pause only switches to it: the
    /// file (made here and handed to QEMU as descriptors in a new fd set, so QEMU opens nothing
    /// by path) and QEMU's node for it, attached to nothing yet. Recorded in the state first,
    /// so whatever happens next, the VM's stop removes the file.
    func prepareOverlay(_ state: inout VMState, qmp: QMPClient, layout: RuntimeLayout) throws -> DiskLayer {
        let top = state.disk[state.disk.count - 1]
        let serial = max(state.nextLayer, state.disk.count)
        let path = layout.directory + "/disk-\(serial).qcow2"
        unlink(path)
        state.nextLayer = serial + 1
        state.diskScratch.append(path)
        try state.save(layout.stateFile)
        try createOverlay(path, on: top)
        let rw = open(path, O_RDWR | O_CLOEXEC)
        let ro = open(path, O_RDONLY | O_CLOEXEC)
        defer {
            if rw >= 0 { close(rw) }
            if ro >= 0 { close(ro) }
        }
        guard rw >= 0, ro >= 0 else { throw SparcError.posix("cannot open disk overlay", path) }
        try DiskLock.lock(rw, path: path, writable: true)
        let layer = DiskLayer(path: path, format: "qcow2", writable: true, virtualSize: top.virtualSize, serial: serial)
        try qmp.addToFDSet(layer.fdSet, descriptors: [rw, ro])
        try qmp.execute(
            "blockdev-add",
            [
                "driver": "qcow2", "node-name": layer.node, "backing": NSNull(),
                "file": ["driver": "file", "node-name": layer.node + "-file", "filename": "/dev/fdset/\(layer.fdSet)", "locking": "off"],
            ])
        return layer
    }

    /// The guest writes into `layer` (made by `prepareOverlay` on the current top) from this
    /// instant; the layer below becomes read-only (the VM must be paused).
    func switchToOverlay(_ layer: DiskLayer, _ state: inout VMState, qmp: QMPClient, layout: RuntimeLayout) throws {
        let top = state.disk[state.disk.count - 1]
        try qmp.execute("blockdev-snapshot", ["node": top.node, "overlay": layer.node])
        state.disk[state.disk.count - 1].writable = false
        state.disk.append(layer)
        try state.save(layout.stateFile)
        FaultPoint.reached("checkpoint-after-disk-snapshot")
    }

    /// Lets go of an overlay `prepareOverlay` made that the guest never wrote into: QEMU's
    /// node and the file (best effort: what remains goes at the VM's stop).
    func discardOverlay(_ layer: DiskLayer, _ state: inout VMState, qmp: QMPClient, layout: RuntimeLayout) {
        // Its file node was made with it and goes with it.
        _ = try? qmp.execute("blockdev-del", ["node-name": layer.node])
        _ = try? qmp.execute("remove-fd", ["fdset-id": layer.fdSet])
        unlink(layer.path)
        state.diskScratch.removeAll { $0 == layer.path }
        try? state.save(layout.stateFile)
    }

    /// Writes every overlay back into the VM's own file (an active commit while the guest
    /// runs), so the file holds all writes again and is the active layer.
    func commitOverlays(_ state: inout VMState, qmp: QMPClient, layout: RuntimeLayout, progress: Progress? = nil) throws {
        guard state.persistentDisk != nil, state.disk.count > 1 else { return }
        let base = state.disk[0]
        let top = state.disk[state.disk.count - 1]
        progress?("writing the disk overlay back into \(Path.base(of: base.path))")
        let job = "sparc-commit-\(top.node)"
        let jobs = (try qmp.execute("query-block-jobs") as? [[String: Any]]) ?? []
        if !jobs.contains(where: { $0["device"] as? String == job }) {
            try qmp.execute("block-commit", ["job-id": job, "device": top.node, "base-node": base.node])
        }
        let deadline = Date().addingTimeInterval(600)
        while true {
            let list = (try qmp.execute("query-block-jobs") as? [[String: Any]]) ?? []
            guard let info = list.first(where: { $0["device"] as? String == job }) else {
                throw SparcError("QEMU ended the disk commit without completing it; the VM still writes into \(top.path)")
            }
            if info["ready"] as? Bool == true { break }
            if Date() > deadline { throw SparcError("the disk commit is still running after 600 s") }
            usleep(20_000)
        }
        FaultPoint.reached("commit-ready")
        try qmp.execute("job-complete", ["id": job])
        while ((try qmp.execute("query-block-jobs") as? [[String: Any]]) ?? []).contains(where: { $0["device"] as? String == job }) {
            usleep(10_000)
        }
        for layer in state.disk.dropFirst().reversed() {
            _ = try? qmp.execute("blockdev-del", ["node-name": layer.node])
            _ = try? qmp.execute("remove-fd", ["fdset-id": layer.fdSet])
            unlink(layer.path)
            state.diskScratch.removeAll { $0 == layer.path }
        }
        state.disk = [base]
        state.disk[0].writable = true
        try state.save(layout.stateFile)
    }

    /// After QEMU died: writes overlays left on a VM's own file back into it (offline), and
    /// repairs what an interrupted QEMU can leave in a qcow2 (leaked clusters), so the file
    /// is clean before anything opens it again.
    func recoverDisk(_ state: VMState) {
        guard let file = state.persistentDisk, let qemuImg = try? QEMUProcess.locateQemuImg() else { return }
        if let top = state.disk.last, state.disk.count > 1, FileSystem.exists(top.path) {
            _ = try? Subprocess.run([qemuImg, "commit", "-q", "-b", file, top.path])
        }
        if state.disk.first?.format == "qcow2" {
            _ = try? Subprocess.run([qemuImg, "check", "-q", "-r", "leaks", "-f", "qcow2", file])
        }
    }

    /// Makes byte ranges of `overlay` (a fresh qcow2 on the frozen `base`) read as zeros:
    /// qemu-io flags them as zero clusters, in batches; the base is opened read-only and shared
    /// (the VM's QEMU holds it).
    func zeroDiskRanges(_ ranges: [DiskByteRange], inOverlay overlay: String, on base: (path: String, format: String)) throws {
        let size = try imageInfo(base.path).size
        for r in ranges where r.offset.addingReportingOverflow(r.length).overflow || Int64(clamping: r.offset + r.length) > size {
            throw SparcError("a swap range at byte \(r.offset) lies beyond the disk (\(size) bytes)")
        }
        guard let qemuIO = Subprocess.which("qemu-io") else {
            throw SparcError("qemu-io not found in PATH (install it: apt-get install qemu-utils)")
        }
        // In --image-opts a comma is written twice.
        func option(_ path: String) -> String { path.replacing(",", with: ",,") }
        let opened =
            "driver=qcow2,file.driver=file,file.filename=\(option(overlay)),backing.driver=\(base.format),backing.file.driver=file,"
            + "backing.file.filename=\(option(base.path)),backing.read-only=on,backing.force-share=on"
        var i = 0
        while i < ranges.count {
            let batch = ranges[i..<min(i + 256, ranges.count)]
            let commands = batch.flatMap { ["-c", "write -q -z \($0.offset) \($0.length)"] }
            let r = try Subprocess.run([qemuIO, "--image-opts"] + commands + [opened])
            guard r.status == 0, !r.stdoutText.contains("error"), !r.stderrText.contains("error") else {
                throw SparcError("cannot zero swap ranges in the disk state: \(r.stderrSummary)")
            }
            i += batch.count
        }
    }
}
