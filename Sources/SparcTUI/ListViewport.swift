/// The window of a list that fits the screen, scrolled so the cursor stays in view: the one
/// rule every list of the UI (processes, terminals, bundles, search hits) scrolls by.
struct ListViewport {
    /// How many rows of a screen `height` lines high hold list rows (title, column header,
    /// status line and function bar take four).
    static func rows(screenHeight height: Int) -> Int { max(0, height - 4) }

    let count: Int
    let rows: Int
    let cursor: Int

    init(count: Int, cursor: Int, screenHeight: Int) {
        self.count = count
        rows = Self.rows(screenHeight: screenHeight)
        self.cursor = cursor
    }

    /// The first item shown.
    var top: Int { min(max(0, cursor - rows + 1), max(0, count - rows)) }

    /// The items shown, in order, each with the screen row it goes on (list rows start at 2).
    var visible: [(index: Int, row: Int)] {
        (top..<min(count, top + rows)).map { ($0, 2 + $0 - top) }
    }

    /// The item under a screen row, if any.
    func index(atScreenRow row: Int) -> Int? {
        let i = top + row - 2
        return row >= 2 && row - 2 < rows && i < count ? i : nil
    }

    /// The cursor after a movement key (arrows move by one, pages by a screen, Home and End to the ends).
    static func move(_ cursor: Int, count: Int, by key: Key, screenHeight: Int) -> Int? {
        let page = max(1, rows(screenHeight: screenHeight) - 1)
        let target: Int
        switch key {
        case .up, .char("k"): target = cursor - 1
        case .down, .char("j"): target = cursor + 1
        case .pageUp: target = cursor - page
        case .pageDown: target = cursor + page
        case .home: target = 0
        case .end: target = count - 1
        default: return nil
        }
        return min(max(0, count - 1), max(0, target))
    }
}
