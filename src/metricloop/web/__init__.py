"""Server-rendered pages a person opens from a message: the incident page and the confirm pages of the signed
acknowledge / resolve links. Plain HTML with inline CSS from web/templates: no script, no external asset."""
