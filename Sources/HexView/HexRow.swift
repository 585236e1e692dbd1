public enum HexViewPlaceholder {}
