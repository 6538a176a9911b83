"""Image stores: directory trees whose every file imgvault keeps encrypted."""
