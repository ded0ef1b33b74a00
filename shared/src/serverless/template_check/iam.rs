//! What a function's role grants, read from the evaluated template: the
//! `Allow` statements of its inline policies (and of `AWS::IAM::Policy`
//! resources attached to it) as (action pattern, resource pattern) pairs,
//! and its managed policies. Matching is IAM's: `*` and `?` wildcards,
//! actions case-insensitive. Conditions are not evaluated (a statement with
//! one counts as granting), `Deny`, `NotAction` and `NotResource` are
//! refused: the check would have to learn them.

use super::cfn::Template;
use serde_json::Value;

/// One action pattern on one resource pattern, from the statement `sid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub action: String,
    pub resource: String,
    pub sid: String,
    /// The policy it is in (SAM names the ones it adds, e.g.
    /// `SyncFunctionEventInvokeConfigOnFailureSQSPolicy`).
    pub policy: String,
}

impl Grant {
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        glob(&self.action.to_ascii_lowercase(), &action.to_ascii_lowercase()) && glob(&self.resource, resource)
    }
}

/// What the role of the function `function` (a logical id) grants.
pub struct RoleGrants {
    pub grants: Vec<Grant>,
    pub managed: Vec<String>,
}

impl RoleGrants {
    pub fn of_function(template: &Template, function: &str) -> Self {
        let role_arn = &template.resource(function)["Properties"]["Role"];
        let role_id = role_arn["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{function}'s Role is not the GetAtt of a role of this template: {role_arn}"));
        let role = template.eval(&template.resource(role_id)["Properties"]).unwrap_or_default();
        let mut grants = Vec::new();
        for policy in role["Policies"].as_array().into_iter().flatten() {
            let name = policy["PolicyName"].as_str().unwrap_or_default();
            statements(&policy["PolicyDocument"], name, &mut grants);
        }
        for (id, policy) in template.resources_of_type("AWS::IAM::Policy") {
            let policy = template.eval(&policy["Properties"]).unwrap_or_default();
            if policy["Roles"].as_array().into_iter().flatten().any(|r| r == &format!("{role_id}-phys")) {
                statements(&policy["PolicyDocument"], id, &mut grants);
            }
        }
        let managed = role["ManagedPolicyArns"].as_array().into_iter().flatten().map(super::cfn::scalar).collect();
        Self { grants, managed }
    }

    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.grants.iter().any(|g| g.allows(action, resource))
    }
}

fn statements(document: &Value, policy: &str, out: &mut Vec<Grant>) {
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(super::cfn::scalar).collect(),
            _ => Vec::new(),
        }
    };
    let statements = match &document["Statement"] {
        Value::Array(a) => a.clone(),
        single => vec![single.clone()],
    };
    for statement in statements {
        let sid = statement["Sid"].as_str().unwrap_or("(no Sid)").to_owned();
        assert_eq!(statement["Effect"], "Allow", "{policy}/{sid}: the check reads Allow statements only");
        for unsupported in ["NotAction", "NotResource"] {
            assert!(statement.get(unsupported).is_none(), "{policy}/{sid}: the check does not read {unsupported}");
        }
        for action in list(&statement["Action"]) {
            for resource in list(&statement["Resource"]) {
                out.push(Grant { action: action.clone(), resource, sid: sid.clone(), policy: policy.to_owned() });
            }
        }
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(glob("arn:aws:dynamodb:*:*:table/T", "arn:aws:dynamodb:us-east-1:1:table/T"));
        assert!(!glob("arn:aws:dynamodb:*:*:table/T", "arn:aws:dynamodb:us-east-1:1:table/T/index/open"));
        assert!(glob("arn:aws:dynamodb:*:*:table/T*", "arn:aws:dynamodb:us-east-1:1:table/T/index/open"));
        assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
        assert!(glob("*", "") && glob("**", "x"));
        let grant = Grant { action: "dynamodb:Get*".into(), resource: "t".into(), sid: "s".into(), policy: "p".into() };
        assert!(grant.allows("dynamodb:GetItem", "t") && grant.allows("DynamoDB:getitem", "t"));
        assert!(!grant.allows("dynamodb:PutItem", "t") && !grant.allows("dynamodb:GetItem", "u"));
    }
}
