"""Reading pyinfra's results table (what the e2e tests' "no changes" assertions rest on)."""

from lab.deploys import DeployResult, parse_results

OUTPUT = """
--> Results:
    Operation                                    Hosts   Success   Error   No Change   
    base | Hostname is the mail host name        1       1         -       -           
    postfix | Install /etc/postfix/main.cf (validated)   2       -         1       1           
    base | /etc/mailname is the mail host name   1       -         -       1           
    Grand total                                  4       1         1       2           

--> Disconnecting from hosts...
"""


def test_rows_are_parsed_without_the_total():
    ops = parse_results(OUTPUT)
    assert [(o.name, o.success, o.error, o.no_change) for o in ops] == [
        ("base | Hostname is the mail host name", 1, 0, 0),
        ("postfix | Install /etc/postfix/main.cf (validated)", 0, 1, 1),
        ("base | /etc/mailname is the mail host name", 0, 0, 1),
    ]


def test_no_table_means_no_rows():
    assert parse_results("--> pyinfra error: No hosts remaining!") == []


def test_a_failure_shows_what_came_before_the_table_and_only_the_rows_that_erred():
    report = ("--> Verify mail.example.test (vm):\n    ERROR   mail.dkim   no signature\n"
              "            fix: run the deploy again\n" + "    ok      x\n" * 400 + "  FAIL smtp.starttls: timed out\n")
    result = DeployResult(1, report + OUTPUT, 1.0, parse_results(OUTPUT))
    text = result.failure_text()
    assert "FAIL smtp.starttls: timed out" in text
    assert text.startswith("--> Verify findings:\n    ERROR   mail.dkim   no signature\n            fix: run the deploy")
    assert "postfix | Install /etc/postfix/main.cf (validated): error" in text
    assert "Hostname is the mail host name" not in text
