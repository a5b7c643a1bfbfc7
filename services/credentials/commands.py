"""Commands the credentials service accepts over the bus."""

from __future__ import annotations

from pydantic import BaseModel, EmailStr, Field, model_validator

USERNAME = Field(min_length=1, max_length=254)
PASSWORD = Field(min_length=1, max_length=1024)


class RegisterAccount(BaseModel):
    username: str = USERNAME
    email: EmailStr
    display_name: str = Field(min_length=1, max_length=200)
    role: str = Field("user", pattern="^(user|agent)$")
    password: str | None = Field(None, max_length=1024, description="Initial password (agents)")


class SignIn(BaseModel):
    username: str = USERNAME
    password: str = PASSWORD


class ChangePassword(BaseModel):
    """The current password proves who asks; after a sign-in with a temporary password, the
    ``change_token`` that sign-in returned does, so the web edge need not keep the password."""

    username: str = USERNAME
    current_password: str | None = Field(None, min_length=1, max_length=1024)
    change_token: str | None = Field(None, min_length=1, max_length=2048)
    new_password: str = PASSWORD

    @model_validator(mode="after")
    def one_proof(self) -> ChangePassword:
        if (self.current_password is None) == (self.change_token is None):
            raise ValueError("give either the current password or the change token")
        return self


class AccountRef(BaseModel):
    username: str = USERNAME


class UnlockAccount(BaseModel):
    username: str = USERNAME
    agent: str = USERNAME
    reason: str = Field("unlocked by the help desk", min_length=1, max_length=500)
