from tunesmith.data.pii import find_pii, luhn_ok, mask_pii


def test_finds_each_kind_and_checks_cards_with_luhn():
    text = "mail jane.doe@example.co.uk or call +44 20 7946 0958; card 4111 1111 1111 1111, ref 4111 1111 1111 1112"
    found = find_pii(text)
    assert len(found["email"]) == 1 and len(found["card"]) == 1 and len(found["phone"]) == 1
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_plain_numbers_are_not_personal_data():
    found = find_pii("I paid 250 pounds on 12/03/2024 for order 5531")
    assert not any(found.values())


def test_mask_replaces_spans():
    assert mask_pii("write to bob@mail.com or 555-123-4567") == "write to [EMAIL] or [PHONE]"
