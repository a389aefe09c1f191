"""The peers hitcount is measured against: minimal counting servers, each started as its own program."""
