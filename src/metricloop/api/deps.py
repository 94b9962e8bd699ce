from fastapi import Request


def workspace(request: Request):
    return request.app.state.workspace
