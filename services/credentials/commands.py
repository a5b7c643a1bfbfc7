"""Commands the credentials service accepts over the bus."""

from __future__ import annotations

from pydantic import BaseModel, EmailStr, Field

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
    username: str = USERNAME
    current_password: str = PASSWORD
    new_password: str = PASSWORD


class AccountRef(BaseModel):
    username: str = USERNAME


class UnlockAccount(BaseModel):
    username: str = USERNAME
    agent: str = USERNAME
    reason: str = Field("unlocked by the help desk", min_length=1, max_length=500)
