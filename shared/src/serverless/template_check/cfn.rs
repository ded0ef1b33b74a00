//! The expanded template (CloudFormation JSON, as `aws-sam-translator`
//! writes it) evaluated under one set of parameter values: conditions
//! decided, `Ref`/`GetAtt`/`Sub`/`If`/`Join` turned into the names and ARNs
//! AWS would make (a resource's physical name is `<LogicalId>-phys`), and
//! `AWS::NoValue` dropped. An intrinsic it does not know fails the check
//! with its name, so the evaluator is taught rather than guessed around.

use serde_json::{Map, Value};
use std::collections::HashMap;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

pub struct Template {
    doc: Value,
    params: HashMap<String, String>,
    conditions: HashMap<String, bool>,
}

impl Template {
    /// `doc` with `given` parameter values over the defaults; a parameter
    /// with neither fails.
    pub fn new(doc: Value, given: &[(&str, &str)]) -> Self {
        let mut params = HashMap::new();
        for (name, spec) in doc["Parameters"].as_object().cloned().unwrap_or_default() {
            let value = given
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| spec.get("Default").map(scalar))
                .unwrap_or_else(|| panic!("parameter {name} has no default and the check gave it no value"));
            params.insert(name, value);
        }
        let mut template = Self { doc, params, conditions: HashMap::new() };
        let conditions = template.doc["Conditions"].as_object().cloned().unwrap_or_default();
        for name in conditions.keys() {
            let value = template.condition(name, &conditions);
            template.conditions.insert(name.clone(), value);
        }
        template
    }

    pub fn resource(&self, id: &str) -> &Value {
        let resource = &self.doc["Resources"][id];
        assert!(resource.is_object(), "the template has no resource {id}");
        resource
    }

    pub fn resources_of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.doc["Resources"].as_object().into_iter().flatten().filter(move |(_, r)| r["Type"] == kind)
    }

    fn condition(&self, name: &str, all: &Map<String, Value>) -> bool {
        let body = all.get(name).unwrap_or_else(|| panic!("unknown condition {name}"));
        self.truth(body, all)
    }

    fn truth(&self, v: &Value, all: &Map<String, Value>) -> bool {
        let (name, args) = intrinsic(v).unwrap_or_else(|| panic!("not a condition: {v}"));
        match name {
            // CloudFormation compares the values as strings.
            "Fn::Equals" => self.eval(&args[0]).map(|v| scalar(&v)) == self.eval(&args[1]).map(|v| scalar(&v)),
            "Fn::Not" => !self.truth(&args[0], all),
            "Fn::And" => args.as_array().into_iter().flatten().all(|a| self.truth(a, all)),
            "Fn::Or" => args.as_array().into_iter().flatten().any(|a| self.truth(a, all)),
            "Condition" => self.condition(args.as_str().unwrap_or_default(), all),
            other => panic!("the check does not know the condition function {other}"),
        }
    }

    /// `v` with every intrinsic evaluated; `None` for `AWS::NoValue`.
    pub fn eval(&self, v: &Value) -> Option<Value> {
        if let Some((name, args)) = intrinsic(v) {
            return self.intrinsic(name, args);
        }
        Some(match v {
            Value::Array(items) => Value::Array(items.iter().filter_map(|i| self.eval(i)).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().filter_map(|(k, v)| self.eval(v).map(|v| (k.clone(), v))).collect())
            }
            other => other.clone(),
        })
    }

    /// `v` evaluated to a string.
    pub fn string(&self, v: &Value) -> Option<String> {
        self.eval(v).map(|v| scalar(&v))
    }

    fn intrinsic(&self, name: &str, args: &Value) -> Option<Value> {
        let text = |s: String| Some(Value::String(s));
        match name {
            "Ref" => self.reference(args.as_str().unwrap_or_default()).map(Value::String),
            "Fn::GetAtt" => {
                let (id, attribute) = match args {
                    Value::Array(a) => (a[0].as_str().unwrap_or_default(), a[1].as_str().unwrap_or_default()),
                    Value::String(s) => s.split_once('.').unwrap_or((s, "")),
                    _ => panic!("Fn::GetAtt {args}"),
                };
                text(self.attribute(id, attribute))
            }
            "Fn::Sub" => {
                let (pattern, vars) = match args {
                    Value::String(s) => (s.as_str(), Map::new()),
                    Value::Array(a) => {
                        (a[0].as_str().unwrap_or_default(), a[1].as_object().cloned().unwrap_or_default())
                    }
                    _ => panic!("Fn::Sub {args}"),
                };
                text(self.substitute(pattern, &vars))
            }
            "Fn::If" => {
                let condition = args[0].as_str().unwrap_or_default();
                let chosen = *self.conditions.get(condition).unwrap_or_else(|| panic!("unknown condition {condition}"));
                self.eval(&args[if chosen { 1 } else { 2 }])
            }
            "Fn::Join" => {
                let separator = args[0].as_str().unwrap_or_default();
                let parts = self.eval(&args[1])?;
                let parts: Vec<String> = parts.as_array().into_iter().flatten().map(scalar).collect();
                text(parts.join(separator))
            }
            "Condition" => Some(Value::Bool(self.conditions[args.as_str().unwrap_or_default()])),
            other => panic!("the check does not know the intrinsic {other}: teach template_check/cfn.rs"),
        }
    }

    fn reference(&self, name: &str) -> Option<String> {
        match name {
            "AWS::NoValue" => None,
            "AWS::Region" => Some(REGION.into()),
            "AWS::AccountId" => Some(ACCOUNT.into()),
            "AWS::Partition" => Some("aws".into()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            "AWS::StackName" => Some("stack".into()),
            _ if self.params.contains_key(name) => Some(self.params[name].clone()),
            _ => {
                let resource = self.resource(name);
                let phys = format!("{name}-phys");
                Some(match resource["Type"].as_str().unwrap_or_default() {
                    "AWS::SQS::Queue" => format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{phys}"),
                    "AWS::Lambda::LayerVersion" => format!("arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{phys}:1"),
                    _ => phys,
                })
            }
        }
    }

    /// `Fn::GetAtt` of a resource, as AWS forms it.
    fn attribute(&self, id: &str, attribute: &str) -> String {
        let kind = self.resource(id)["Type"].as_str().unwrap_or_default().to_owned();
        let phys = format!("{id}-phys");
        match (kind.as_str(), attribute) {
            ("AWS::DynamoDB::Table", "Arn") => format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{phys}"),
            ("AWS::SQS::Queue", "Arn") => format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{phys}"),
            ("AWS::SQS::Queue", "QueueName") => phys,
            ("AWS::Logs::LogGroup", "Arn") => format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{phys}:*"),
            ("AWS::Lambda::Function", "Arn") => format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{phys}"),
            ("AWS::IAM::Role", "Arn") => format!("arn:aws:iam::{ACCOUNT}:role/{phys}"),
            ("AWS::Events::Rule", "Arn") => format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{phys}"),
            ("AWS::S3::Bucket", "Arn") => format!("arn:aws:s3:::{}", phys.to_ascii_lowercase()),
            ("AWS::SNS::Topic", "TopicArn") => format!("arn:aws:sns:{REGION}:{ACCOUNT}:{phys}"),
            ("AWS::Scheduler::ScheduleGroup", "Arn") => {
                format!("arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{phys}")
            }
            _ => panic!("the check does not know Fn::GetAtt {id}.{attribute} of a {kind}: teach template_check/cfn.rs"),
        }
    }

    fn substitute(&self, pattern: &str, vars: &Map<String, Value>) -> String {
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').unwrap_or_else(|| panic!("Fn::Sub: unclosed ${{ in {pattern}"));
            let name = &after[..end];
            let value = if let Some(v) = vars.get(name) {
                self.string(v).unwrap_or_default()
            } else if let Some((id, attribute)) = name.split_once('.').filter(|_| !name.starts_with("AWS::")) {
                self.attribute(id, attribute)
            } else {
                self.reference(name).unwrap_or_default()
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// `{"Fn::X": args}` or `{"Ref": name}` or `{"Condition": name}`.
fn intrinsic(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object().filter(|m| m.len() == 1)?;
    let (name, args) = map.iter().next()?;
    (name == "Ref" || name == "Condition" || name.starts_with("Fn::")).then_some((name.as_str(), args))
}

/// A scalar as CloudFormation passes it on (numbers and bools as text).
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intrinsics_evaluate_under_the_parameters() {
        let doc = json!({
            "Parameters": {"Key": {"Type": "String", "Default": ""}, "Days": {"Type": "Number", "Default": 30}},
            "Conditions": {"HasKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Key"}, ""]}]}},
            "Resources": {"T": {"Type": "AWS::DynamoDB::Table"}, "Q": {"Type": "AWS::SQS::Queue"}},
        });
        let value = json!({
            "a": {"Fn::If": ["HasKey", {"Ref": "Key"}, {"Ref": "AWS::NoValue"}]},
            "b": {"Fn::Sub": "${T.Arn}/index/open"},
            "c": [{"Fn::GetAtt": ["Q", "Arn"]}, {"Fn::If": ["HasKey", "x", {"Ref": "AWS::NoValue"}]}],
            "d": {"Ref": "Days"},
        });
        let plain = Template::new(doc.clone(), &[]);
        let evaluated = plain.eval(&value).unwrap();
        assert_eq!(evaluated["a"], Value::Null, "dropped");
        assert_eq!(evaluated["b"], "arn:aws:dynamodb:us-east-1:123456789012:table/T-phys/index/open");
        assert_eq!(evaluated["c"], json!(["arn:aws:sqs:us-east-1:123456789012:Q-phys"]));
        assert_eq!(evaluated["d"], "30");
        let keyed = Template::new(doc, &[("Key", "k")]);
        assert_eq!(keyed.eval(&value).unwrap()["a"], "k");
    }
}
